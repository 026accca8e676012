"""The gateway's tables (SQLAlchemy Core). Alembic migrations in serving/migrations mirror these.

Money is integer micro-credits. `accounts.balance_micros` is deposits minus deductions and
`accounts.reserved_micros` the sum of open reservations; both are derived from `transactions`
(append-only): sum(transactions.amount_micros) == balance_micros - reserved_micros.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value is not None and dialect.name == "sqlite":
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("balance_micros", sa.BigInteger, nullable=False, default=0),
    sa.Column("reserved_micros", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.CheckConstraint("reserved_micros >= 0", name="ck_accounts_reserved_nonneg"),
    sa.CheckConstraint("balance_micros >= reserved_micros", name="ck_accounts_covered"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("model_pool", sa.JSON, nullable=False, default=list),
    sa.Column("optimize_mode", sa.String(16), nullable=False, default="balanced"),
    sa.Column("rpm_limit", sa.Integer, nullable=True),
    sa.Column("tpm_limit", sa.Integer, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    # the API key that created this one (its limits bound this key's); None: dashboard or CLI
    sa.Column("parent_key_id", sa.String(32), nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    # opt-in traffic capture (serving/traffic.py): the share of requests stored, 0 = off
    sa.Column("capture_rate", sa.Float, nullable=False, server_default="0"),
    # the share of captured `auto` requests also answered by another pool model (None: the
    # gateway's COMPARE_RATE)
    sa.Column("compare_rate", sa.Float, nullable=True),
)

# One row per browser login: the session cookie's JWT names its row (`jti`), and a cookie counts
# only while its row is neither revoked (logout, password change) nor expired.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

transactions = sa.Table(
    "transactions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
    # deposit (+), reservation (-hold), release (+hold), deduction (-cost)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount_micros", sa.BigInteger, nullable=False),
    sa.Column("reservation_id", sa.String(40), nullable=True),
    sa.Column("description", sa.String(200), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Index("ix_transactions_account_id_id", "account_id", "id"),
)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("amount_micros", sa.BigInteger, nullable=False),
    # open, settled, expired (released at expires_at), abandoned (released: its holder died)
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    # the process that holds it, "host:boot:pid" (`ledger.holder_id`); the open ones of a dead
    # gunicorn worker are released when the master reaps it (`serving.gconf.child_exit`)
    sa.Column("holder", sa.String(100), nullable=True),
    sa.Index("ix_reservations_status_expires", "status", "expires_at"),
)

usage_logs = sa.Table(
    "usage_logs",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("requested_model", sa.String(200), nullable=False),
    sa.Column("served_model", sa.String(200), nullable=True),
    sa.Column("routing_task", sa.String(64), nullable=True),
    sa.Column("routing_complexity", sa.String(16), nullable=True),
    sa.Column("routing_confidence", sa.Float, nullable=True),
    sa.Column("router_version", sa.String(100), nullable=True),
    sa.Column("fallback_from", sa.String(200), nullable=True),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("completion_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("total_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cost_micros", sa.BigInteger, nullable=False, default=0),
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("ttft_ms", sa.Float, nullable=True),
    sa.Column("routing_time_ms", sa.Float, nullable=True),
    sa.Column("stream", sa.Boolean, nullable=False, default=False),
    sa.Column("status", sa.String(16), nullable=False),  # success, error, cancelled
    sa.Column("error_type", sa.String(64), nullable=True),
    sa.Index("ix_usage_account_seq", "account_id", "seq"),
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # unix time
)

# Captured traffic (serving/traffic.py): only from keys with capture_rate > 0, scoped to the
# account, deleted with the key (revocation) or the account (deactivation) and after
# TRAFFIC_RETENTION_DAYS. JSON payloads are stored as text (written on the hot path's raw cursor).
captures = sa.Table(
    "captures",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # the request's X-Request-Id
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
    # (no index of its own: one b-tree less on the hot path; a key's rows are found through the
    # account's index when the key is revoked)
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("requested_model", sa.String(200), nullable=False),
    sa.Column("served_model", sa.String(200), nullable=False),
    sa.Column("task", sa.String(64), nullable=True),
    sa.Column("routing", sa.Text, nullable=True),  # JSON: the decision as the response carried it
    sa.Column("messages", sa.Text, nullable=False),  # JSON
    sa.Column("answer", sa.Text, nullable=False),
    sa.Index("ix_captures_account_created", "account_id", "created_at"),
    sa.Index("ix_captures_created", "created_at"),
)

# A side-by-side comparison: the user's answer and another pool model's, in a random A/B order
pairs = sa.Table(
    "pairs",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True, index=True),
    sa.Column("request_id", sa.String(40), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("messages", sa.Text, nullable=False),
    sa.Column("task", sa.String(64), nullable=True),
    sa.Column("routing", sa.Text, nullable=True),
    sa.Column("model_a", sa.String(200), nullable=False),
    sa.Column("answer_a", sa.Text, nullable=False),
    sa.Column("model_b", sa.String(200), nullable=False),
    sa.Column("answer_b", sa.Text, nullable=False),
    sa.Column("served", sa.String(1), nullable=False),  # which side is the user's answer: a | b
    sa.Column("compare_cost_micros", sa.BigInteger, nullable=False, default=0),
    sa.Index("ix_pairs_account_seq", "account_id", "seq"),
    sa.Index("ix_pairs_created", "created_at"),
)

pair_votes = sa.Table(
    "pair_votes",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("pair_id", sa.String(40), sa.ForeignKey("pairs.id"), nullable=False, index=True),
    sa.Column("winner", sa.String(4), nullable=False),  # a, b, tie
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

pair_verdicts = sa.Table(
    "pair_verdicts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("pair_id", sa.String(40), sa.ForeignKey("pairs.id"), nullable=False, index=True),
    sa.Column("judge", sa.String(200), nullable=False),
    sa.Column("winner", sa.String(4), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),  # JSON
    sa.Column("created_at", UTCDateTime, nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True, index=True),
    sa.Column("request_id", sa.String(40), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("task", sa.String(64), nullable=True),
    sa.Column("routing", sa.Text, nullable=True),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Index("ix_feedback_account_seq", "account_id", "seq"),
    sa.Index("ix_feedback_created", "created_at"),
)
