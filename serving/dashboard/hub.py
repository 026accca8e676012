"""The per-process event hub behind the live WebSocket.

Events are read from the database, never from process memory, so a request finished by any gunicorn
worker reaches the sockets held by every other: one background thread per worker process polls
`usage_logs` (by `seq`) and `transactions` (by `id`) for the accounts that have a socket open in
that process, every `EVENTS_POLL_S` seconds, and fans the rows out to those sockets' queues. It also
watches the engines' health and queue depth and broadcasts changes to every socket.

Row ids are assigned at insert and a slower transaction can commit after a faster one with a higher
id (PostgreSQL); so each poll re-reads a window of `LOOKBACK` ids below the cursor and skips rows
already delivered. The thread starts on the first subscriber (after gunicorn has forked) and sleeps
while nobody listens.

With Redis (`serving.dashboard.bus`), the poll runs when a worker on any host rings the bell for an
account that has a socket here, and otherwise only every `EVENTS_SAFETY_POLL_S`; `ring` is what
the request path calls after it commits rows an account's sockets show.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import Flask

from serving import bell, db, ledger, protocol
from serving.dashboard import bus as events_bus
from serving.schema import transactions, usage_logs

logger = logging.getLogger(__name__)

LOOKBACK = 1000  # ids re-read below the cursor for rows that committed late
RECHECK = "_recheck"  # an internal event (never sent): re-check the socket's credentials now
QUEUE_MAX = 1000  # a socket that falls this far behind loses events (and is told so)


@dataclass(eq=False)
class Subscription:
    account_id: int
    after_usage: int = 0  # only rows newer than the socket are its events
    after_tx: int = 0
    queue: queue.Queue[dict[str, Any]] = field(default_factory=lambda: queue.Queue(QUEUE_MAX))
    dropped: int = 0

    def put(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1


def credits_snapshot(conn: sa.Connection, account_id: int, per_credit: int) -> dict[str, Any]:
    """The same body as `GET /credits`."""
    b = ledger.balance(conn, account_id)
    balance = ledger.micros_to_credits(b["available_micros"], per_credit)
    return protocol.Credits(balance=balance, **b).model_dump(mode="json")


class _Cursor:
    """The highest id seen in one table, and the ids already delivered within the look-back."""

    def __init__(self, present: list[int]) -> None:
        self.high = max(present, default=0)
        self.seen: set[int] = set(present)  # rows that existed before anyone listened

    def since(self) -> int:
        return max(0, self.high - LOOKBACK)

    def fresh(self, ids: Iterable[int]) -> set[int]:
        new = {i for i in ids if i > self.high or (i > self.since() and i not in self.seen)}
        self.seen |= new
        self.high = max([self.high, *new])
        floor = self.since()
        self.seen = {i for i in self.seen if i > floor}
        return new


def _recent_ids(conn: sa.Connection, col: sa.Column[Any]) -> list[int]:
    high = conn.execute(sa.select(sa.func.max(col))).scalar() or 0
    return [int(i) for i in conn.execute(sa.select(col).where(col > high - LOOKBACK)).scalars()]


class TooManySockets(Exception):
    """A socket over `EVENTS_MAX_PER_ACCOUNT` or `EVENTS_MAX_TOTAL` (its message says which)."""


class EventHub:
    def __init__(self, app: Flask) -> None:
        self.app = app
        # each open socket holds a worker thread: cap them per account and per worker process
        self.max_per_account = int(app.config.get("EVENTS_MAX_PER_ACCOUNT", 8))
        self.max_total = int(app.config.get("EVENTS_MAX_TOTAL", 256))
        self.poll_s = float(app.config.get("EVENTS_POLL_S", 0.5))
        self.health_s = float(app.config.get("EVENTS_HEALTH_S", 2.0))
        self.micros_per_credit = int(app.config.get("MICROS_PER_CREDIT", 1_000_000))
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()  # one poll at a time moves the cursors
        self._subs: dict[int, set[Subscription]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._usage: _Cursor | None = None
        self._tx: _Cursor | None = None
        self.models: dict[str, dict[str, Any]] = {}
        self._last_health = 0.0
        self.bus = events_bus.from_config(app)
        self.safety_s = float(app.config.get("EVENTS_SAFETY_POLL_S", 5.0))
        self._rung: set[int] = set()  # accounts the bus rang for since the last poll (-1: all)
        self._last_poll = 0.0

    # -- the bell -----------------------------------------------------------------------------
    def ring(self, account_id: int, reauth: bool = False) -> None:
        """After a commit: `account_id` has new rows (or, `reauth`, must re-check its sockets'
        credentials). With the Redis bus, every worker on every host hears it; without, the
        local sockets re-check and the next poll delivers the rows."""
        if self.bus is not None:
            self.bus.ring(account_id, reauth)
        elif reauth:
            self._heard(set(), {account_id})

    def _heard(self, accounts: set[int], reauth: set[int]) -> None:
        with self._lock:
            here = set(self._subs)
            for account_id in reauth & here:
                for sub in self._subs[account_id]:
                    sub.put({"type": RECHECK})  # the socket's loop re-checks its credentials
            wanted = -1 in accounts or bool(accounts & here)
            if wanted:
                self._rung |= accounts
        if wanted:
            self._wake.set()

    # -- subscribers -------------------------------------------------------------------------
    def subscribe(self, account_id: int) -> Subscription:
        """A new socket's subscription; TooManySockets when its account or this process is full."""
        with db.get_engine(self.app).connect() as conn:
            usage_high = conn.execute(sa.select(sa.func.max(usage_logs.c.seq))).scalar() or 0
            tx_high = conn.execute(sa.select(sa.func.max(transactions.c.id))).scalar() or 0
        sub = Subscription(account_id, int(usage_high), int(tx_high))
        with self._lock:
            if len(self._subs.get(account_id, ())) >= self.max_per_account:
                raise TooManySockets(
                    f"Too many live-event sockets for this account ({self.max_per_account} open)."
                )
            if sum(len(s) for s in self._subs.values()) >= self.max_total:
                raise TooManySockets("Too many live-event sockets on this server. Retry later.")
            if not self._subs:  # idle until now: the cursors are stale, start from here
                self._reset_locked()
            self._subs.setdefault(account_id, set()).add(sub)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="inferbase-events", daemon=True
                )
                self._thread.start()
                if self.bus is not None:
                    self.bus.listen(self._heard)
        self._wake.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.account_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.account_id]

    def count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    def _reset_locked(self) -> None:
        with db.get_engine(self.app).connect() as conn:
            self._usage = _Cursor(_recent_ids(conn, usage_logs.c.seq))
            self._tx = _Cursor(_recent_ids(conn, transactions.c.id))

    def _targets(self, account_id: int) -> list[Subscription]:
        with self._lock:
            return list(self._subs.get(account_id, ()))

    def _broadcast(self, event: dict[str, Any]) -> None:
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            sub.put(event)

    # -- the poller ---------------------------------------------------------------------------
    def _run(self) -> None:
        import time

        while True:
            with self._lock:
                ids = list(self._subs)
            if not ids:
                self._wake.wait(timeout=5.0)
                self._wake.clear()
                continue
            try:
                now = time.monotonic()
                with self._lock:
                    rung, self._rung = self._rung, set()
                # without a bus, every tick polls; with one, a ring (or a new socket) or the
                # safety interval does
                if self.bus is None or rung or now - self._last_poll >= self.safety_s:
                    self._last_poll = now
                    self.poll(ids)
                if now - self._last_health >= self.health_s:
                    self._last_health = now
                    self.poll_models()
            except Exception:  # keep the thread alive through a database hiccup
                logger.exception("event poll failed")
            tick = self.poll_s if self.bus is None else min(self.health_s, self.safety_s)
            self._wake.wait(timeout=tick)
            self._wake.clear()

    def poll(self, account_ids: list[int]) -> None:
        with self._poll_lock:
            self._poll(account_ids)

    def _poll(self, account_ids: list[int]) -> None:
        assert self._usage is not None and self._tx is not None
        with db.get_engine(self.app).connect() as conn:
            for row in self._fresh_rows(
                conn, usage_logs, usage_logs.c.seq, self._usage, account_ids
            ):
                record = protocol.UsageRecord.model_validate(dict(row)).model_dump(mode="json")
                for sub in self._targets(int(row["account_id"])):
                    if row["seq"] > sub.after_usage:
                        sub.put({"type": "usage", "data": record})
            by_account: dict[int, list[dict[str, Any]]] = {}
            for row in self._fresh_rows(
                conn, transactions, transactions.c.id, self._tx, account_ids
            ):
                tx = protocol.Transaction.model_validate(dict(row)).model_dump(mode="json")
                by_account.setdefault(int(row["account_id"]), []).append(tx)
            for account_id, txs in by_account.items():
                snapshot = credits_snapshot(conn, account_id, self.micros_per_credit)
                for sub in self._targets(account_id):
                    mine = [t for t in txs if t["id"] > sub.after_tx]
                    if mine:
                        sub.put({"type": "balance", "data": snapshot, "transactions": mine})

    @staticmethod
    def _fresh_rows(
        conn: sa.Connection,
        table: sa.Table,
        col: sa.Column[Any],
        cursor: _Cursor,
        account_ids: list[int],
    ) -> list[sa.RowMapping]:
        """Rows of these accounts not delivered yet: ids first (index only), then those rows."""
        ids = conn.execute(
            sa.select(col)
            .where(table.c.account_id.in_(account_ids), col > cursor.since())
            .order_by(col)
            .limit(5000)
        ).scalars()
        fresh = cursor.fresh(int(i) for i in ids)
        if not fresh:
            return []
        stmt = sa.select(table).where(col.in_(sorted(fresh))).order_by(col)
        return list(conn.execute(stmt).mappings())

    def poll_models(self) -> None:
        with self._poll_lock:
            self._poll_models()

    def _poll_models(self) -> None:
        engines = self.app.extensions.get("engines")
        if engines is None:
            return
        for model in engines.models():
            stats = engines.stats(model.id)
            state = {
                "model": model.id,
                "status": engines.health(model.id),
                "queue_depth": None if stats is None else stats.queue_depth,
                "ttft_ms": None if stats is None else stats.ttft_ms,
                "kv_cache_usage": None if stats is None else stats.kv_cache_usage,
            }
            if self.models.get(model.id) != state:
                self.models[model.id] = state
                self._broadcast({"type": "model", "data": state})


def get_hub(app: Flask) -> EventHub:
    hub: EventHub = app.extensions[bell.HUB]
    return hub
