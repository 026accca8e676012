"""The credits ledger: integer micro-credits, append-only transactions, reserve -> settle.

Invariants (checked by tests and enforced by CHECK constraints):
- accounts.balance_micros == sum(deposits) + sum(deductions)        (deductions are negative)
- accounts.reserved_micros == sum of open reservations
- sum(transactions.amount_micros) == balance_micros - reserved_micros
- balance_micros >= reserved_micros >= 0, so the balance never goes below zero.

`reserve` and `settle` are one short write transaction each (`Ledger`, one per database, with the
dialect's statements in `SQLiteLedger` / `PostgresLedger`). The reservation is a single conditional
UPDATE (a row lock on PostgreSQL, the database write lock under BEGIN IMMEDIATE on SQLite), so
concurrent workers can never hold more than the account has.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from serving import db, fastsql
from serving.errors import ApiError, db_unavailable
from serving.schema import accounts, api_keys, reservations, transactions, utcnow

if TYPE_CHECKING:
    from serving.ratelimit import Fused

logger = logging.getLogger(__name__)
SETTLE_RETRY_S = 10.0  # how long a settlement waits for an unreachable database


def holder_id(pid: int | None = None) -> str:
    """Who holds a reservation: "host:boot:pid" of a process on this host (`pid`, default this
    one). The boot id (Linux) keeps a pid of an earlier boot of the same host apart; the gunicorn
    master names its dead worker with it (`release_holder`)."""
    return f"{_host()}:{os.getpid() if pid is None else pid}"


@functools.cache
def _host() -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:  # not Linux: the host and pid alone
        boot = "-"
    return f"{socket.gethostname()[:60]}:{boot}"


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
    "expires_at, holder) VALUES (:rid, :acct, :kid, :amt, 'open', :now, :exp, :holder)"
)
_HOLD_TXN = (
    "INSERT INTO transactions (account_id, kind, amount_micros, reservation_id, created_at) "
    "VALUES (:acct, 'reservation', :neg, :rid, :now)"
)
# PostgreSQL: the same three statements as one (data-modifying CTEs)
_RESERVE_PG = (
    "WITH upd AS (" + _RESERVE + "{key} RETURNING id), "
    "hold AS (INSERT INTO reservations (id, account_id, key_id, amount_micros, status, created_at, "
    "expires_at, holder) SELECT :rid, id, :kid, :amt, 'open', :now, :exp, :holder FROM upd "
    "RETURNING id) "
    "INSERT INTO transactions (account_id, kind, amount_micros, reservation_id, created_at) "
    "SELECT id, 'reservation', :neg, :rid, :now FROM upd"
)

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
# PostgreSQL: close, charge, release/deduct and the usage row as one statement; it returns 0 when
# the reservation was no longer open (the late path follows)
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
# opt-in traffic capture (serving/traffic.py): the captured request's row, written in the
# settlement's own transaction (on PostgreSQL one more data-modifying CTE of the same statement)
_CAPTURE = (
    "INSERT INTO captures (id, account_id, key_id, created_at, requested_model, served_model, "
    "task, routing, messages, answer) VALUES (:c_id, :acct, :c_key_id, :now, :c_requested, "
    ":c_served, :c_task, :c_routing, :c_messages, :c_answer)"
)
_SETTLE_PG_CAPTURE = _SETTLE_PG.replace("WITH ", "WITH cap AS (" + _CAPTURE + " RETURNING 1), ", 1)
_SETTLED = "SELECT cost_micros FROM usage_logs WHERE id = :rid"
_LATE_USAGE = "UPDATE usage_logs SET cost_micros = :u_cost_micros WHERE id = :u_id"
_USAGE_DEFAULTS = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "stream": False}


@dataclass(frozen=True, slots=True)
class Settlement:
    charged: int
    late: bool  # the reservation had already expired and been released


class Ledger(ABC):
    """`reserve` and `settle` on one database: the same steps and the same transactions on every
    database; a subclass holds one dialect's statements (`_hold`, `_close`).

    A request pays for two write transactions: the reservation (rate-limit counters, when `limits`
    is given, then the hold) and the settlement (close, charge, usage row, token counters). They
    run on the database's transaction executor (`serving.fastsql`): group commit on SQLite; on
    PostgreSQL one statement in autocommit when there are no counters to update."""

    def __init__(self, tx: fastsql.TxExecutor) -> None:
        self.tx = tx

    def reserve(
        self,
        account_id: int,
        key_id: str | None,
        reservation_id: str,
        amount: int,
        ttl_s: float,
        limits: Fused | None = None,
    ) -> None:
        """Hold `amount` for a request, or 402 (cannot cover) / 403 (key revoked, account
        inactive). The key's revocation is re-checked inside the hold, so a key revoked by any
        worker is refused at once even when this worker has it cached. `limits`: the key's
        rate-limit counters, counted and checked first in the same transaction (429 before
        anything is held)."""
        tx = self.tx
        now = utcnow()
        p = {
            "acct": account_id,
            "amt": amount,
            "kid": key_id,
            "rid": reservation_id,
            "now": tx.ts(now),
            "exp": tx.ts(now + timedelta(seconds=ttl_s)),
            "neg": -amount,
            "holder": holder_id(),
        }
        live = key_id is not None
        if limits is None:
            refused = tx.atomic(lambda cur: self._hold(cur, p, live))
        else:

            def hold(cur: Any) -> bool:
                limits.check(tx, cur)
                return self._hold(cur, p, live)

            refused = tx.transaction(hold)
        if refused:
            with db.read(tx.engine) as conn:
                _refuse(conn, account_id, key_id, amount)

    def settle(
        self,
        reservation_id: str,
        account_id: int,
        amount: int,
        cost: int,
        usage: dict[str, Any],
        limits: Fused | None = None,
        capture: dict[str, Any] | None = None,
    ) -> Settlement:
        """Close a reservation: charge `cost` (capped at the hold), release the rest, log usage.

        Idempotent: only the first settlement of a reservation moves money. A reservation the
        sweeper already released is charged what the balance still covers. `limits`: the key's
        counters, which count the request's tokens in the same transaction. `capture`: a captured
        request's row (`serving.traffic.capture_row`, `c_` parameters), written with the usage
        row in the same transaction."""
        tx = self.tx
        now = utcnow()
        charged = min(cost, amount)
        p: dict[str, Any] = {"rid": reservation_id, "acct": account_id, "amt": amount}
        p.update(now=tx.ts(now), charged=charged, neg=-charged)
        if capture is not None:
            p.update(capture)
        row = {**_USAGE_DEFAULTS, **usage, "cost_micros": charged, "created_at": now}
        p.update({"u_" + c: row.get(c) for c in USAGE_COLUMNS}, u_created_at=p["now"])
        tokens = int(row.get("total_tokens") or 0)

        def close(cur: Any) -> tuple[bool, int | None]:
            # the counters first, as in `reserve` (key's counter rows, then the account's row):
            # the other order deadlocked on PostgreSQL against a reservation of the same key
            if limits is not None:
                limits.add_tokens(tx, cur, tokens)
            return self._close(cur, p, cost)

        def once() -> tuple[bool, int]:
            late, done = (tx.atomic if limits is None else tx.transaction)(close)
            if done is None:
                done = tx.transaction(lambda cur: self._late(cur, p, cost))
            return late, done

        late, charged = self._retrying(once, reservation_id)
        if charged < cost:
            logger.warning(
                "request %s cost %d but only %d was charged (late=%s)",
                reservation_id,
                cost,
                charged,
                late,
            )
        return Settlement(charged, late)

    def _retrying(self, once: Callable[[], tuple[bool, int]], rid: str) -> tuple[bool, int]:
        """`once()`, tried again while the database is unreachable (a PostgreSQL restart, a
        dropped connection), for up to `SETTLE_RETRY_S`: the request was served, so its
        settlement waits for the database rather than leave the hold open until it expires. A
        try whose commit went through but whose answer was lost is found by its usage row (one per
        reservation): it is not settled twice."""
        deadline = time.monotonic() + SETTLE_RETRY_S
        while True:
            try:
                return once()
            except Exception as e:
                if not db_unavailable(e) or time.monotonic() > deadline:
                    raise
                logger.warning("settlement of %s: database unavailable, retrying", rid)
            time.sleep(0.2)
            try:
                with self.tx.read() as cur:
                    cur.execute(self.tx.sql(_SETTLED), {"rid": rid})
                    row = cur.fetchone()
            except Exception as e:
                if not db_unavailable(e):
                    raise
                continue
            if row is not None:  # an earlier try committed
                return False, int(row[0])

    @abstractmethod
    def _hold(self, cur: Any, p: dict[str, Any], key_live: bool) -> bool:
        """The reservation's statements; True when refused (nothing held)."""

    @abstractmethod
    def _close(self, cur: Any, p: dict[str, Any], cost: int) -> tuple[bool, int | None]:
        """The settlement's statements: (late, charged). Late: the reservation was no longer
        open; charged None: its late charge (`_late`) is still to be made, in a transaction of
        its own."""

    def _late(self, cur: Any, p: dict[str, Any], cost: int) -> int:
        """A settlement whose usage row is written: charge late, correct the row's cost."""
        charged = self._charge_late(cur, p, cost)
        cur.execute(self.tx.sql(_LATE_USAGE), {**p, "u_cost_micros": charged})
        return charged

    def _charge_late(self, cur: Any, p: dict[str, Any], cost: int) -> int:
        """The sweeper released the hold already: charge what the balance still covers."""
        sql = self.tx.sql
        cur.execute(sql(_AVAILABLE), p)
        charged = max(0, min(cost, int(cur.fetchone()[0])))
        if charged:
            cur.execute(sql(_CHARGE_LATE), {**p, "charged": charged})
            cur.execute(sql(_TXN), {**p, "kind": "deduction", "value": -charged})
        return charged


class SQLiteLedger(Ledger):
    def _hold(self, cur: Any, p: dict[str, Any], key_live: bool) -> bool:
        sql = self.tx.sql
        cur.execute(sql(_RESERVE + _KEY_LIVE if key_live else _RESERVE), p)
        if cur.rowcount != 1:
            return True
        cur.execute(sql(_HOLD), p)
        cur.execute(sql(_HOLD_TXN), p)
        return False

    def _close(self, cur: Any, p: dict[str, Any], cost: int) -> tuple[bool, int | None]:
        sql = self.tx.sql
        cur.execute(sql(_CLOSE), p)
        late = cur.rowcount != 1
        if not late:
            charged = p["charged"]
            cur.execute(sql(_CHARGE), p)
            if charged:
                cur.execute(sql(_RELEASE_AND_DEDUCT), p)
            else:
                cur.execute(sql(_TXN), {**p, "kind": "release", "value": p["amt"]})
            cur.execute(sql(_USAGE), p)
        else:
            charged = self._charge_late(cur, p, cost)  # in this same transaction
            # (a copy of the parameters: a retry starts afresh)
            cur.execute(sql(_USAGE), {**p, "u_cost_micros": charged})
        if "c_id" in p:  # the captured request's row, with its usage row
            cur.execute(sql(_CAPTURE), p)
        return late, charged


class PostgresLedger(Ledger):
    def _hold(self, cur: Any, p: dict[str, Any], key_live: bool) -> bool:
        cur.execute(self.tx.sql(_RESERVE_PG.format(key=_KEY_LIVE if key_live else "")), p)
        return bool(cur.rowcount != 1)

    def _close(self, cur: Any, p: dict[str, Any], cost: int) -> tuple[bool, int | None]:
        cur.execute(self.tx.sql(_SETTLE_PG_CAPTURE if "c_id" in p else _SETTLE_PG), p)
        if cur.fetchone()[0] == 1:
            return False, p["charged"]
        return True, None  # (not in this statement's transaction: autocommit has none)


_ledgers: dict[int, Ledger] = {}


def for_engine(engine: sa.Engine) -> Ledger:
    """The ledger of `engine`'s database in this process."""
    tx = fastsql.for_engine(engine)
    led = _ledgers.get(id(engine))
    if led is None or led.tx is not tx:
        led = _ledgers[id(engine)] = (SQLiteLedger if tx.sqlite else PostgresLedger)(tx)
    return led


def reserve(
    account_id: int,
    key_id: str | None,
    reservation_id: str,
    amount: int,
    ttl_s: float,
    engine: sa.Engine | None = None,
    limits: Fused | None = None,
) -> None:
    """`Ledger.reserve` on `engine` (default: the app's)."""
    led = for_engine(engine or db.get_engine())
    led.reserve(account_id, key_id, reservation_id, amount, ttl_s, limits)


def settle(
    reservation_id: str,
    account_id: int,
    amount: int,
    cost: int,
    usage: dict[str, Any],
    engine: sa.Engine | None = None,
    limits: Fused | None = None,
    capture: dict[str, Any] | None = None,
) -> Settlement:
    """`Ledger.settle` on `engine` (default: the app's)."""
    led = for_engine(engine or db.get_engine())
    return led.settle(reservation_id, account_id, amount, cost, usage, limits, capture)


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
    """Release reservations past expires_at (their worker died, or their host did). Safe to run in
    every worker."""
    now = utcnow()
    stale = sa.and_(reservations.c.status == "open", reservations.c.expires_at < now)
    released = _release(engine, stale, "expired", "expired reservation released", limit)
    if released:
        logger.warning("released %d expired reservations", released)
    return released


def release_holder(engine: sa.Engine, holder: str) -> int:
    """Release the open reservations of `holder` (`holder_id`), a process that is gone: its
    requests can never settle. The gunicorn master calls it for each worker it reaps
    (`serving.gconf.child_exit`); a request of that worker is then not billed at all."""
    released = 0
    while True:
        mine = sa.and_(reservations.c.status == "open", reservations.c.holder == holder)
        n = _release(engine, mine, "abandoned", f"holder {holder} exited", 200)
        released += n
        if n < 200:
            break
    return released


def _release(
    engine: sa.Engine, where: sa.ColumnElement[bool], status: str, why: str, limit: int
) -> int:
    """Release up to `limit` open reservations matching `where`, each in a transaction of its own
    (a settlement that comes first wins: the reservation is re-checked open)."""
    now = utcnow()
    with db.read(engine) as conn:
        stale = conn.execute(
            sa.select(reservations.c.id, reservations.c.account_id, reservations.c.amount_micros)
            .where(where)
            .limit(limit)
        ).all()
    released = 0
    for rid, account_id, amount in stale:
        with db.write(engine) as conn:
            done = conn.execute(
                reservations.update()
                .where(reservations.c.id == rid, reservations.c.status == "open")
                .values(status=status)
            ).rowcount
            if done != 1:
                continue
            conn.execute(
                accounts.update()
                .where(accounts.c.id == account_id)
                .values(reserved_micros=accounts.c.reserved_micros - amount)
            )
            row = _txn(account_id, "release", amount, rid, now)
            row["description"] = why[:200]
            conn.execute(transactions.insert(), row)
            released += 1
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
