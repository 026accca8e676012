"""The credits ledger: integer micro-credits, append-only transactions, reserve -> settle.

Invariants (checked by tests and enforced by CHECK constraints):
- accounts.balance_micros == sum(deposits) + sum(deductions)        (deductions are negative)
- accounts.reserved_micros == sum of open reservations
- sum(transactions.amount_micros) == balance_micros - reserved_micros
- balance_micros >= reserved_micros >= 0, so the balance never goes below zero.

Each function is one short transaction. The reservation is a single conditional UPDATE (a row lock
on PostgreSQL, the database write lock under BEGIN IMMEDIATE on SQLite), so concurrent workers can
never hold more than the account has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from serving import db
from serving.errors import ApiError
from serving.schema import accounts, api_keys, reservations, transactions, usage_logs, utcnow

logger = logging.getLogger(__name__)


def cost_micros(prompt_tokens: int, completion_tokens: int, in_price: int, out_price: int) -> int:
    """Price of a request: prices are micro-credits per million tokens; rounded up per request."""
    numerator = prompt_tokens * in_price + completion_tokens * out_price
    return -(-numerator // 1_000_000)


def credits_to_micros(amount: str | int | Decimal, micros_per_credit: int = 1_000_000) -> int:
    value = Decimal(str(amount)) * micros_per_credit
    if value != value.to_integral_value():
        raise ValueError(f"{amount} is finer than one micro-credit")
    return int(value)


def micros_to_credits(micros: int, micros_per_credit: int = 1_000_000) -> str:
    return str(Decimal(micros) / Decimal(micros_per_credit))


def deposit(conn: sa.Connection, account_id: int, amount: int, description: str = "") -> None:
    if amount <= 0:
        raise ApiError(400, "A deposit must be positive.", param="amount")
    res = conn.execute(
        accounts.update()
        .where(accounts.c.id == account_id)
        .values(balance_micros=accounts.c.balance_micros + amount)
    )
    if res.rowcount != 1:
        raise ApiError(404, f"No account {account_id}.")
    conn.execute(
        transactions.insert().values(
            account_id=account_id,
            kind="deposit",
            amount_micros=amount,
            description=description[:200] or None,
            created_at=utcnow(),
        )
    )


_RESERVE = (
    accounts.update()
    .where(
        accounts.c.id == sa.bindparam("acct"),
        accounts.c.active.is_(True),
        accounts.c.balance_micros - accounts.c.reserved_micros >= sa.bindparam("amt"),
    )
    .values(reserved_micros=accounts.c.reserved_micros + sa.bindparam("amt"))
)
_KEY_LIVE = (
    sa.select(api_keys.c.id)
    .where(api_keys.c.id == sa.bindparam("kid"), api_keys.c.revoked_at.is_(None))
    .exists()
)
_RESERVE_WITH_KEY = _RESERVE.where(_KEY_LIVE)


def reserve(
    account_id: int, key_id: str | None, reservation_id: str, amount: int, ttl_s: float
) -> None:
    """Hold `amount` for a request, or 402 (cannot cover) / 403 (key revoked, account inactive)."""
    now = utcnow()
    with db.write() as conn:
        params: dict[str, Any] = {"acct": account_id, "amt": amount}
        if key_id is not None:
            params["kid"] = key_id
        stmt = _RESERVE_WITH_KEY if key_id is not None else _RESERVE
        if conn.execute(stmt, params).rowcount != 1:
            _refuse(conn, account_id, key_id, amount)
        conn.execute(
            reservations.insert(),
            {
                "id": reservation_id,
                "account_id": account_id,
                "key_id": key_id,
                "amount_micros": amount,
                "status": "open",
                "created_at": now,
                "expires_at": now + timedelta(seconds=ttl_s),
            },
        )
        conn.execute(
            transactions.insert(),
            {
                "account_id": account_id,
                "kind": "reservation",
                "amount_micros": -amount,
                "reservation_id": reservation_id,
                "created_at": now,
            },
        )


def _refuse(conn: sa.Connection, account_id: int, key_id: str | None, amount: int) -> None:
    acct = conn.execute(sa.select(accounts).where(accounts.c.id == account_id)).first()
    if acct is None or not acct.active:
        raise ApiError(403, "This account is deactivated.", code="account_deactivated")
    if key_id is not None:
        revoked = conn.execute(
            sa.select(api_keys.c.revoked_at).where(api_keys.c.id == key_id)
        ).scalar()
        if revoked is not None:
            raise ApiError(403, "This API key has been revoked.", code="key_revoked")
    available = acct.balance_micros - acct.reserved_micros
    raise ApiError(
        402,
        f"Insufficient credits: this request may cost up to {amount} micro-credits and "
        f"{max(available, 0)} are available. Top up your account.",
        code="insufficient_credits",
    )


@dataclass(frozen=True, slots=True)
class Settlement:
    charged: int
    late: bool  # the reservation had already expired and been released


def settle(
    reservation_id: str, account_id: int, amount: int, cost: int, usage: dict[str, Any]
) -> Settlement:
    """Close a reservation: charge `cost` (capped at the hold), release the rest, log usage."""
    now = utcnow()
    with db.write() as conn:
        closed = conn.execute(
            reservations.update()
            .where(reservations.c.id == reservation_id, reservations.c.status == "open")
            .values(status="settled"),
        ).rowcount
        late = closed != 1
        if not late:
            charged = min(cost, amount)
            conn.execute(
                accounts.update()
                .where(accounts.c.id == account_id)
                .values(
                    balance_micros=accounts.c.balance_micros - charged,
                    reserved_micros=accounts.c.reserved_micros - amount,
                )
            )
            rows = [_txn(account_id, "release", amount, reservation_id, now)]
        else:  # the sweeper released the hold already: charge what the balance still covers
            avail = conn.execute(
                sa.select(accounts.c.balance_micros - accounts.c.reserved_micros).where(
                    accounts.c.id == account_id
                )
            ).scalar_one()
            charged = max(0, min(cost, avail))
            conn.execute(
                accounts.update()
                .where(accounts.c.id == account_id)
                .values(balance_micros=accounts.c.balance_micros - charged)
            )
            rows = []
        if charged:
            rows.append(_txn(account_id, "deduction", -charged, reservation_id, now))
        if rows:
            conn.execute(transactions.insert(), rows)
        conn.execute(usage_logs.insert(), {**usage, "cost_micros": charged, "created_at": now})
    if charged < cost:
        logger.warning(
            "request %s cost %d but only %d was charged (late=%s)",
            reservation_id,
            cost,
            charged,
            late,
        )
    return Settlement(charged, late)


def _txn(account_id: int, kind: str, amount: int, rid: str, now: datetime) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "kind": kind,
        "amount_micros": amount,
        "reservation_id": rid,
        "description": None,
        "created_at": now,
    }


def release_expired(engine: sa.Engine, limit: int = 200) -> int:
    """Release reservations whose worker died (past expires_at). Safe to run in every worker."""
    now = utcnow()
    with db.read(engine) as conn:
        stale = conn.execute(
            sa.select(reservations.c.id, reservations.c.account_id, reservations.c.amount_micros)
            .where(reservations.c.status == "open", reservations.c.expires_at < now)
            .limit(limit)
        ).all()
    released = 0
    for rid, account_id, amount in stale:
        with db.write(engine) as conn:
            done = conn.execute(
                reservations.update()
                .where(reservations.c.id == rid, reservations.c.status == "open")
                .values(status="expired")
            ).rowcount
            if done != 1:
                continue
            conn.execute(
                accounts.update()
                .where(accounts.c.id == account_id)
                .values(reserved_micros=accounts.c.reserved_micros - amount)
            )
            row = _txn(account_id, "release", amount, rid, now)
            row["description"] = "expired reservation released"
            conn.execute(transactions.insert(), row)
            released += 1
    if released:
        logger.warning("released %d expired reservations", released)
    return released


def balance(conn: sa.Connection, account_id: int) -> dict[str, int]:
    row = conn.execute(
        sa.select(accounts.c.balance_micros, accounts.c.reserved_micros).where(
            accounts.c.id == account_id
        )
    ).one()
    return {
        "balance_micros": row.balance_micros,
        "reserved_micros": row.reserved_micros,
        "available_micros": row.balance_micros - row.reserved_micros,
    }
