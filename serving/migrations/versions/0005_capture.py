"""traffic capture (#15): api_keys.capture_rate, compare_rate; captures, pairs, votes, feedback

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 13:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "captures",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_model", sa.String(length=200), nullable=False),
        sa.Column("served_model", sa.String(length=200), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=True),
        sa.Column("routing", sa.Text(), nullable=True),
        sa.Column("messages", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("captures", schema=None) as batch_op:
        batch_op.create_index(
            "ix_captures_account_created", ["account_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_captures_created", ["created_at"], unique=False)

    op.create_table(
        "feedback",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("task", sa.String(length=64), nullable=True),
        sa.Column("routing", sa.Text(), nullable=True),
        sa.Column("rating", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_account_seq", ["account_id", "seq"], unique=False)
        batch_op.create_index("ix_feedback_created", ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_feedback_key_id"), ["key_id"], unique=False)

    op.create_table(
        "pairs",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("messages", sa.Text(), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=True),
        sa.Column("routing", sa.Text(), nullable=True),
        sa.Column("model_a", sa.String(length=200), nullable=False),
        sa.Column("answer_a", sa.Text(), nullable=False),
        sa.Column("model_b", sa.String(length=200), nullable=False),
        sa.Column("answer_b", sa.Text(), nullable=False),
        sa.Column("served", sa.String(length=1), nullable=False),
        sa.Column("compare_cost_micros", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.create_index("ix_pairs_account_seq", ["account_id", "seq"], unique=False)
        batch_op.create_index("ix_pairs_created", ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_pairs_key_id"), ["key_id"], unique=False)

    op.create_table(
        "pair_verdicts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pair_id", sa.String(length=40), nullable=False),
        sa.Column("judge", sa.String(length=200), nullable=False),
        sa.Column("winner", sa.String(length=4), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["pair_id"],
            ["pairs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pair_verdicts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pair_verdicts_pair_id"), ["pair_id"], unique=False)

    op.create_table(
        "pair_votes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pair_id", sa.String(length=40), nullable=False),
        sa.Column("winner", sa.String(length=4), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["pair_id"],
            ["pairs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pair_votes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pair_votes_pair_id"), ["pair_id"], unique=False)

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("capture_rate", sa.Float(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("compare_rate", sa.Float(), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("compare_rate")
        batch_op.drop_column("capture_rate")

    with op.batch_alter_table("pair_votes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pair_votes_pair_id"))

    op.drop_table("pair_votes")
    with op.batch_alter_table("pair_verdicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pair_verdicts_pair_id"))

    op.drop_table("pair_verdicts")
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pairs_key_id"))
        batch_op.drop_index("ix_pairs_created")
        batch_op.drop_index("ix_pairs_account_seq")

    op.drop_table("pairs")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_key_id"))
        batch_op.drop_index("ix_feedback_created")
        batch_op.drop_index("ix_feedback_account_seq")

    op.drop_table("feedback")
    with op.batch_alter_table("captures", schema=None) as batch_op:
        batch_op.drop_index("ix_captures_created")
        batch_op.drop_index("ix_captures_account_created")

    op.drop_table("captures")
