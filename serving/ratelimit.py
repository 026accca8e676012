"""Per-key rate limits (requests and tokens per minute) with the `limits` library.

Storage is shared by every worker (``INFERBASE_RATELIMIT_STORAGE``): ``auto`` (default) is Redis
when ``INFERBASE_REDIS_URL`` is set, else ``database`` when the gateway's database is SQLite, else
``file``; ``file`` is a SQLite file under HOME shared by the workers of this host; ``database``
keeps the counters in the gateway's database (shared by every host); anything else is a `limits`
storage URI.

With the counters in the gateway's own SQLite database, the chat path does not pay for separate
transactions: the request's RPM hit and TPM check run inside the reservation's transaction and its
tokens are counted inside the settlement's (`Fused`), with the same keys, windows and rows as the
`limits` storage, so the two paths see the same counts. The profile of the gateway benchmark had
the four write transactions of a request (RPM hit, reserve, settle, TPM hit) at about a fifth of
its CPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from limits import RateLimitItemPerMinute
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from serving import db, fastsql
from serving.errors import ApiError
from serving.keys import KeyInfo
from serving.schema import rate_limits

_INCR = (
    "INSERT INTO rate_limits (key, count, expires_at) VALUES (:k, :a, :exp) "
    "ON CONFLICT (key) DO UPDATE SET "
    "count = CASE WHEN rate_limits.expires_at <= :now THEN :a ELSE rate_limits.count + :a END, "
    "expires_at = CASE WHEN rate_limits.expires_at <= :now THEN :exp "
    "ELSE rate_limits.expires_at END "
    "RETURNING count, expires_at"
)
_GET = "SELECT count, expires_at FROM rate_limits WHERE key = :k AND expires_at > :now"


class SQLStorage(Storage):
    """Fixed-window counters in a `rate_limits` table (SQLite >= 3.35 or PostgreSQL): one upsert
    per hit on the raw cursor. Used over the gateway's database, or over a small SQLite file of
    its own (`file_engine`) that every worker on the host shares."""

    STORAGE_SCHEME = ["inferbase+sql"]

    def __init__(self, engine: sa.Engine, **options: Any) -> None:
        super().__init__(None, **options)
        self.engine = engine
        self.sql = fastsql.for_engine(engine)

    @property
    def base_exceptions(self) -> type[Exception]:
        return sa.exc.SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self.sql.write() as cur:
            cur.execute(
                self.sql.sql(_INCR), {"k": key, "a": amount, "exp": now + expiry, "now": now}
            )
            return int(cur.fetchone()[0])

    def _row(self, key: str) -> tuple[int, float] | None:
        with self.sql.read() as cur:
            cur.execute(self.sql.sql(_GET), {"k": key, "now": time.time()})
            row = cur.fetchone()
        return (int(row[0]), float(row[1])) if row else None

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1] if row else time.time()

    def check(self) -> bool:
        with self.sql.read() as cur:
            cur.execute("SELECT 1")
        return True

    def reset(self) -> int | None:
        with db.write(self.engine) as conn:
            return conn.execute(rate_limits.delete()).rowcount

    def clear(self, key: str) -> None:
        with db.write(self.engine) as conn:
            conn.execute(rate_limits.delete().where(rate_limits.c.key == key))

    def purge_expired(self) -> int:
        with db.write(self.engine) as conn:
            return conn.execute(
                rate_limits.delete().where(rate_limits.c.expires_at < time.time())
            ).rowcount


def _retry_after(expires_at: float) -> int:
    return max(1, math.ceil(expires_at - time.time()))


def _limited(amount: int, what: str, retry: int) -> ApiError:
    return ApiError(
        429,
        f"Rate limit reached: {amount} {what} per minute for this key. Retry in {retry} s.",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry)},
    )


@dataclass(frozen=True, slots=True)
class Fused:
    """One key's counters, updated by the ledger inside its own SQLite transactions."""

    rpm_key: str
    rpm_limit: int
    tpm_key: str
    tpm_limit: int
    expiry: int

    def check(self, d: fastsql.Dialect, cur: Any) -> None:
        """Count the request (RPM) and check the token window still has room; 429 otherwise
        (raised inside the transaction, so it rolls back with nothing held)."""
        now = time.time()
        cur.execute(d.sql(_INCR), {"k": self.rpm_key, "a": 1, "exp": now + self.expiry, "now": now})
        count, expires_at = cur.fetchone()
        if count > self.rpm_limit:
            raise _limited(self.rpm_limit, "requests", _retry_after(float(expires_at)))
        cur.execute(d.sql(_GET), {"k": self.tpm_key, "now": now})
        row = cur.fetchone()
        if row is not None and row[0] >= self.tpm_limit:
            raise _limited(self.tpm_limit, "tokens", _retry_after(float(row[1])))

    def add_tokens(self, d: fastsql.Dialect, cur: Any, tokens: int) -> None:
        if tokens > 0:
            now = time.time()
            cur.execute(
                d.sql(_INCR), {"k": self.tpm_key, "a": tokens, "exp": now + self.expiry, "now": now}
            )
            cur.fetchone()


def file_engine(home: Path) -> sa.Engine:
    """A SQLite file under HOME for the counters alone (no fsync: a crash may lose counts)."""
    home.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(f"sqlite:///{home / 'ratelimits.db'}", 16)

    @sa.event.listens_for(engine, "connect")
    def _fast(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA synchronous=OFF")

    rate_limits.create(engine, checkfirst=True)
    return engine


def make_storage(app: Flask) -> Storage:
    choice = str(app.config.get("RATELIMIT_STORAGE") or "auto")
    url = app.config.get("REDIS_URL")
    if choice == "auto":
        sqlite = app.extensions["db"].dialect.name == "sqlite"
        choice = url if url else ("database" if sqlite else "file")
    if choice == "file":
        return SQLStorage(file_engine(Path(app.config["HOME"])))
    if choice == "database":
        return SQLStorage(app.extensions["db"])
    storage = storage_from_string(choice)
    if not isinstance(storage, Storage):
        raise ValueError(f"INFERBASE_RATELIMIT_STORAGE={choice!r} names an async storage")
    return storage


class RateLimits:
    def __init__(self, app: Flask) -> None:
        self.storage = make_storage(app)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.default_rpm = int(app.config["DEFAULT_RPM"])
        self.default_tpm = int(app.config["DEFAULT_TPM"])
        self._items: dict[tuple[str, int], RateLimitItemPerMinute] = {}
        # counters in the gateway's own SQLite database: the ledger updates them in its transactions
        self.fusable = (
            isinstance(self.storage, SQLStorage)
            and self.storage.engine is app.extensions["db"]
            and self.storage.sql.sqlite
        )

    def fused(self, key: KeyInfo | None) -> Fused | None:
        """The key's counters for the ledger to update in its own transactions, or None when the
        storage is elsewhere (then call `check_request` and `add_tokens`)."""
        if key is None or not self.fusable:
            return None
        rpm = self._item("rpm", key.rpm_limit or self.default_rpm)
        tpm = self._item("tpm", key.tpm_limit or self.default_tpm)
        return Fused(
            rpm.key_for(key.id), rpm.amount, tpm.key_for(key.id), tpm.amount, rpm.get_expiry()
        )

    def _item(self, kind: str, amount: int) -> RateLimitItemPerMinute:
        item = self._items.get((kind, amount))
        if item is None:
            item = self._items[(kind, amount)] = RateLimitItemPerMinute(amount, namespace=kind)
        return item

    def _refuse(self, item: RateLimitItemPerMinute, key_id: str, what: str) -> ApiError:
        reset = self.limiter.get_window_stats(item, key_id).reset_time
        return _limited(item.amount, what, _retry_after(reset))

    def check_request(self, key: KeyInfo) -> None:
        """Count one request against RPM and check the TPM window still has room (429 if not)."""
        rpm = self._item("rpm", key.rpm_limit or self.default_rpm)
        if not self.limiter.hit(rpm, key.id):
            raise self._refuse(rpm, key.id, "requests")
        tpm = self._item("tpm", key.tpm_limit or self.default_tpm)
        if not self.limiter.test(tpm, key.id):
            raise self._refuse(tpm, key.id, "tokens")

    def add_tokens(self, key: KeyInfo, tokens: int) -> None:
        if tokens > 0:
            self.limiter.hit(
                self._item("tpm", key.tpm_limit or self.default_tpm), key.id, cost=tokens
            )


def get() -> RateLimits:
    return current_app.extensions["ratelimits"]


def init_app(app: Flask) -> None:
    app.extensions["ratelimits"] = RateLimits(app)
