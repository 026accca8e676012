"""Ledger invariants, checked straight from the tables."""

from __future__ import annotations

import sqlalchemy as sa

from serving.schema import accounts, reservations, transactions, usage_logs


def check(conn: sa.Connection, account_id: int) -> dict[str, int]:
    acct = conn.execute(sa.select(accounts).where(accounts.c.id == account_id)).one()
    t = transactions.c

    def total(*kinds: str) -> int:
        q = sa.select(sa.func.coalesce(sa.func.sum(t.amount_micros), 0)).where(
            t.account_id == account_id, t.kind.in_(kinds)
        )
        return int(conn.execute(q).scalar_one())

    deposits, deductions = total("deposit"), total("deduction")
    held = total("reservation") + total("release")
    open_holds = int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(reservations.c.amount_micros), 0)).where(
                reservations.c.account_id == account_id, reservations.c.status == "open"
            )
        ).scalar_one()
    )
    billed = int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(usage_logs.c.cost_micros), 0)).where(
                usage_logs.c.account_id == account_id
            )
        ).scalar_one()
    )
    assert acct.balance_micros == deposits + deductions
    assert acct.reserved_micros == -held == open_holds
    assert acct.balance_micros == deposits - billed
    assert acct.balance_micros >= acct.reserved_micros >= 0
    return {"balance": acct.balance_micros, "reserved": acct.reserved_micros, "billed": billed}
