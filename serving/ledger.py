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
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from serving import db, fastsql
from serving.errors import ApiError
from serving.schema import accounts, api_keys, reservations, transactions, utcnow

if TYPE_CHECKING:
    from serving.ratelimit import Fused

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
    "UPDATE accounts SET reserved_micros = reserved_micros + :amt "
    "WHERE id = :acct AND active AND balance_micros - reserved_micros >= :amt"
)
_KEY_LIVE = " AND EXISTS (SELECT 1 FROM api_keys WHERE id = :kid AND revoked_at IS NULL)"
_HOLD = (
    "INSERT INTO reservations (id, account_id, key_id, amount_micros, status, created_at, "
    "expires_at) VALUES (:rid, :acct, :kid, :amt, 'open', :now, :exp)"
)
_HOLD_TXN = (
    "INSERT INTO transactions (account_id, kind, amount_micros, reservation_id, created_at) "
    "VALUES (:acct, 'reservation', :neg, :rid, :now)"
)


# PostgreSQL: the same three statements as one round trip (data-modifying CTEs).
_RESERVE_PG = (
    "WITH upd AS (" + _RESERVE + "{key} RETURNING id), "
    "hold AS (INSERT INTO reservations (id, account_id, key_id, amount_micros, status, created_at, "
    "expires_at) SELECT :rid, id, :kid, :amt, 'open', :now, :exp FROM upd RETURNING id) "
    "INSERT INTO transactions (account_id, kind, amount_micros, reservation_id, created_at) "
    "SELECT id, 'reservation', :neg, :rid, :now FROM upd"
)


def reserve(
    account_id: int,
    key_id: str | None,
    reservation_id: str,
    amount: int,
    ttl_s: float,
    engine: sa.Engine | None = None,
    limits: Fused | None = None,
) -> None:
    """Hold `amount` for a request, or 402 (cannot cover) / 403 (key revoked, account inactive).

    One transaction, three statements; the key's revocation is re-checked inside the UPDATE, so a
    key revoked by any worker is refused at once even when this worker has it cached. `limits`
    (SQLite): the key's rate-limit counters, counted and checked first in the same transaction
    (429 before anything is held)."""
    d = fastsql.for_engine(engine or db.get_engine())
    now = utcnow()
    p = {
        "acct": account_id,
        "amt": amount,
        "kid": key_id,
        "rid": reservation_id,
        "now": d.ts(now),
        "exp": d.ts(now + timedelta(seconds=ttl_s)),
        "neg": -amount,
    }
    key_check = _KEY_LIVE if key_id is not None else ""
    if d.sqlite:

        def hold(cur: Any) -> bool:
            if limits is not None:
                limits.check(d, cur)
            cur.execute(d.sql(_RESERVE + key_check), p)
            if cur.rowcount != 1:
                return True
            cur.execute(d.sql(_HOLD), p)
            cur.execute(d.sql(_HOLD_TXN), p)
            return False

        refused = d.grouped(hold)
    else:  # one atomic statement, one round trip
        with d.single() as cur:
            cur.execute(d.sql(_RESERVE_PG.format(key=key_check)), p)
            refused = cur.rowcount != 1
    if refused:
        with db.read(d.engine) as conn:
            _refuse(conn, account_id, key_id, amount)


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


_CLOSE = "UPDATE reservations SET status = 'settled' WHERE id = :rid AND status = 'open'"
_CHARGE = (
    "UPDATE accounts SET balance_micros = balance_micros - :charged, "
    "reserved_micros = reserved_micros - :amt WHERE id = :acct"
)
_CHARGE_LATE = "UPDATE accounts SET balance_micros = balance_micros - :charged WHERE id = :acct"
_AVAILABLE = "SELECT balance_micros - reserved_micros FROM accounts WHERE id = :acct"
_TXN = (
    "INSERT INTO transactions (account_id, kind, amount_micros, reservation_id, created_at) "
    "VALUES (:acct, :kind, :value, :rid, :now)"
)
_RELEASE_AND_DEDUCT = (
    "INSERT INTO transactions (account_id, kind, amount_micros, reservation_id, created_at) "
    "VALUES (:acct, 'release', :amt, :rid, :now), (:acct, 'deduction', :neg, :rid, :now)"
)
USAGE_COLUMNS = (
    "id", "account_id", "key_id", "created_at", "requested_model", "served_model",
    "routing_task", "routing_complexity", "routing_confidence", "router_version",
    "fallback_from", "prompt_tokens", "completion_tokens", "total_tokens", "cost_micros",
    "latency_ms", "ttft_ms", "routing_time_ms", "stream", "status", "error_type",
)  # fmt: skip
_USAGE = "INSERT INTO usage_logs ({}) VALUES ({})".format(
    ", ".join(USAGE_COLUMNS), ", ".join(":u_" + c for c in USAGE_COLUMNS)
)


_SETTLE_PG = (
    "WITH closed AS (UPDATE reservations SET status = 'settled' "
    "WHERE id = :rid AND status = 'open' RETURNING account_id), "
    "acct AS (UPDATE accounts SET balance_micros = balance_micros - :charged, "
    "reserved_micros = reserved_micros - :amt WHERE id = (SELECT account_id FROM closed) "
    "RETURNING id), "
    "txn AS (INSERT INTO transactions "
    "(account_id, kind, amount_micros, reservation_id, created_at) "
    "SELECT id, 'release', :amt, :rid, :now FROM acct UNION ALL "
    "SELECT id, 'deduction', :neg, :rid, :now FROM acct WHERE :charged > 0 RETURNING 1) "
    + _USAGE
    + " RETURNING (SELECT count(*) FROM closed)"
)
_LATE_USAGE = "UPDATE usage_logs SET cost_micros = :charged WHERE id = :uid"
_USAGE_DEFAULTS = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "stream": False}


def settle(
    reservation_id: str,
    account_id: int,
    amount: int,
    cost: int,
    usage: dict[str, Any],
    engine: sa.Engine | None = None,
    limits: Fused | None = None,
) -> Settlement:
    """Close a reservation: charge `cost` (capped at the hold), release the rest, log usage.

    Idempotent: only the first settlement of a reservation moves money. `limits` (SQLite): the
    key's counters, which count the request's tokens in the same transaction."""
    d = fastsql.for_engine(engine or db.get_engine())
    now = utcnow()
    charged = min(cost, amount)
    p: dict[str, Any] = {"rid": reservation_id, "acct": account_id, "amt": amount}
    p.update(now=d.ts(now), charged=charged, neg=-charged)
    row = {**_USAGE_DEFAULTS, **usage, "cost_micros": charged, "created_at": now}
    p.update({"u_" + c: row.get(c) for c in USAGE_COLUMNS}, u_created_at=p["now"])
    if not d.sqlite:  # one atomic statement; the rare late path follows in its own transaction
        with d.single() as cur:
            cur.execute(d.sql(_SETTLE_PG), p)
            late = cur.fetchone()[0] != 1
        if late:
            with d.write() as cur:
                charged = _charge_late(d, cur, p, cost)
                cur.execute(d.sql(_LATE_USAGE), {"charged": charged, "uid": usage["id"]})
    else:

        def close(cur: Any) -> tuple[bool, int]:
            cur.execute(d.sql(_CLOSE), p)
            late = cur.rowcount != 1
            q = p
            if not late:
                cur.execute(d.sql(_CHARGE), p)
                if charged:
                    cur.execute(d.sql(_RELEASE_AND_DEDUCT), p)
                else:
                    cur.execute(d.sql(_TXN), {**p, "kind": "release", "value": amount})
            else:  # charge what the balance still covers (a copy: a retry starts afresh)
                q = {**p, "u_cost_micros": _charge_late(d, cur, p, cost)}
            cur.execute(d.sql(_USAGE), q)
            if limits is not None:
                limits.add_tokens(d, cur, int(row.get("total_tokens") or 0))
            return late, int(q["u_cost_micros"])

        late, charged = d.grouped(close)
    if charged < cost:
        logger.warning(
            "request %s cost %d but only %d was charged (late=%s)",
            reservation_id,
            cost,
            charged,
            late,
        )
    return Settlement(charged, late)


def _charge_late(d: fastsql.Dialect, cur: Any, p: dict[str, Any], cost: int) -> int:
    """The sweeper released the hold already: charge what the balance still covers."""
    cur.execute(d.sql(_AVAILABLE), p)
    charged = max(0, min(cost, int(cur.fetchone()[0])))
    if charged:
        cur.execute(d.sql(_CHARGE_LATE), {**p, "charged": charged})
        cur.execute(d.sql(_TXN), {**p, "kind": "deduction", "value": -charged})
    return charged


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
