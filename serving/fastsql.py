"""Transaction executors: the hot path's SQL on raw DB-API cursors, one executor per database.

SQLAlchemy Core costs ~100 µs of Python per statement here (compile cache, result set-up, events);
the per-request bookkeeping (reserve, settle, rate-limit counters) is a handful of fixed statements,
so it skips that layer. Statements are written once with ``:name`` parameters and converted to the
driver's style (sqlite3 takes ``:name``; psycopg ``%(name)s``). Table names are unqualified, so a
PostgreSQL ``search_path`` applies.

Every executor runs ``transaction(fn)``: ``fn(cursor)`` inside one write transaction, returning
what ``fn`` returns once it has committed (an exception rolls it back and is raised). The dialects
differ only in how:

- `SQLiteExecutor`: SQLite has one writer at a time, so writers of this process queue and share
  transactions (group commit, each job in its own savepoint); processes (gunicorn workers) queue on
  an flock of a file beside the database; a thread of its own checkpoints the WAL.
- `PostgresExecutor`: a pooled connection per transaction (row locks do the queueing), and
  ``atomic(fn)`` for one self-contained statement in autocommit mode (one round trip).

Connections are set up by `serving.db` (`connect_sqlite`, `make_engine`), for the pool and for the
SQLite executor's own per-thread connections alike.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from serving import db

T = TypeVar("T")
logger = logging.getLogger(__name__)
CHECKPOINT_INTERVAL_S = 1.0
_PARAM = re.compile(r"(?<![:\w]):(\w+)")


class TxExecutor(ABC):
    """Runs fixed statements in transactions on one engine's database (one per engine and
    process: connections and locks never cross a fork)."""

    sqlite: bool

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.pid = os.getpid()

    def sql(self, text: str) -> str:
        """`text` in the driver's parameter style."""
        return text

    def ts(self, value: datetime) -> Any:
        """A UTC timestamp as the column type stores it."""
        return value

    @abstractmethod
    def transaction(self, fn: Callable[[Any], T]) -> T:
        """``fn(cursor)`` in one write transaction; its result once committed."""

    def atomic(self, fn: Callable[[Any], T]) -> T:
        """Like `transaction`, for an ``fn`` that runs one self-contained statement."""
        return self.transaction(fn)

    @abstractmethod
    def read(self) -> AbstractContextManager[Any]:
        """A cursor for reads outside a write transaction."""


class SQLiteExecutor(TxExecutor):
    sqlite = True

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._local = threading.local()
        # SQLite's busy handler waits by sleeping (up to 100 ms a try), which collapses throughput
        # when many workers write. Writers queue instead: threads on a lock, processes on an flock
        # of a file beside the database, which wakes the next waiter as soon as it is released.
        self._write_lock = threading.Lock()
        self._pending: list[_Job] = []  # group commit: jobs waiting for the next write transaction
        self._pending_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._checkpointer: threading.Thread | None = None
        if engine.url.database not in (None, "", ":memory:"):
            path = f"{engine.url.database}.writelock"
            self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def ts(self, value: datetime) -> Any:
        """Naive UTC text, as `schema.UTCDateTime` stores it on SQLite."""
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")

    def _conn(self) -> sqlite3.Connection:
        """This thread's own connection (no pool check-out on the hot path)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = db.connect_sqlite(self.engine)
            if self._lock_fd is not None:  # a file: checkpoints run off the request path
                conn.execute("PRAGMA wal_autocheckpoint=0")
                self._start_checkpointer()
            self._local.conn = conn
        return conn

    def _start_checkpointer(self) -> None:
        """One thread per process copies the WAL back into the database every second (a PASSIVE
        checkpoint: writers go on meanwhile). With SQLite's default, the commit that crosses 1,000
        WAL pages does it, and that request waits; the hot pages (an account's row, the tables'
        last pages) are also copied once a second instead of once per thousand pages."""
        with self._pending_lock:  # (the caller may hold the write lock)
            if self._checkpointer is not None:
                return
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        conn = db.connect_sqlite(self.engine)
        while True:
            time.sleep(CHECKPOINT_INTERVAL_S)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as e:  # busy with another process's checkpoint: next round
                logger.debug("checkpoint skipped: %s", e)

    def transaction(self, fn: Callable[[Any], T]) -> T:
        """Group commit: ``fn`` joins the jobs of this process's threads waiting to write. Whoever
        takes the write lock runs every job queued so far, each in its own savepoint (an exception
        rolls back that job alone and is raised to its caller), then commits once: under load one
        BEGIN IMMEDIATE/COMMIT (and one cross-process lock) serves many requests; alone, a job
        costs one plain transaction."""
        job = _Job(fn)
        with self._pending_lock:
            self._pending.append(job)
        with self._write_lock:
            if not job.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._run(batch)
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    def _run(self, batch: list[_Job]) -> None:
        cur = self._conn().cursor()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        single = len(batch) == 1
        try:
            cur.execute("BEGIN IMMEDIATE")
            for job in batch:
                if not single:
                    cur.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(cur)
                except Exception as e:
                    job.error = e
                    if not single:
                        cur.execute("ROLLBACK TO job")
                if not single:
                    cur.execute("RELEASE job")
            cur.execute("ROLLBACK" if single and batch[0].error is not None else "COMMIT")
        except BaseException as e:  # the transaction itself failed: so did every job in it
            if cur.connection.in_transaction:
                cur.execute("ROLLBACK")
            for job in batch:
                job.result, job.error = None, job.error or e
            if not isinstance(e, Exception):
                raise
        finally:
            cur.close()
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            for job in batch:
                job.done = True

    @contextmanager
    def read(self) -> Iterator[Any]:
        cur = self._conn().cursor()
        try:
            yield cur
        finally:
            cur.close()


class PostgresExecutor(TxExecutor):
    sqlite = False

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._cache: dict[str, str] = {}
        self._auto = engine.execution_options(isolation_level="AUTOCOMMIT")

    def sql(self, text: str) -> str:
        out = self._cache.get(text)
        if out is None:
            out = self._cache[text] = _PARAM.sub(r"%(\1)s", text)
        return out

    def transaction(self, fn: Callable[[Any], T]) -> T:
        with self._cursor(self.engine, commit=True) as cur:
            return fn(cur)

    def atomic(self, fn: Callable[[Any], T]) -> T:
        """Autocommit: one round trip instead of BEGIN, statement, COMMIT."""
        with self._cursor(self._auto, commit=False) as cur:
            return fn(cur)

    @contextmanager
    def read(self) -> Iterator[Any]:
        with self._cursor(self.engine, commit=False) as cur:
            yield cur

    @staticmethod
    @contextmanager
    def _cursor(engine: sa.Engine, commit: bool) -> Iterator[Any]:
        """A cursor of a pooled connection, committed (or rolled back) at the end; a connection
        the server dropped is invalidated so the pool never reuses it."""
        with engine.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            cur = dbapi.cursor()  # type: ignore[union-attr]
            try:
                yield cur
                if commit:
                    dbapi.commit()  # type: ignore[union-attr]
                elif not dbapi.autocommit:  # type: ignore[union-attr]
                    dbapi.rollback()  # type: ignore[union-attr]
            except BaseException as e:
                _discard_if_broken(conn, dbapi, e)
                raise
            finally:
                cur.close()


class _Job:
    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


def _discard_if_broken(conn: sa.Connection, dbapi: Any, error: BaseException) -> None:
    """Roll back; a connection the server dropped is invalidated so the pool never reuses it."""
    try:
        if not dbapi.autocommit:
            dbapi.rollback()
    except Exception:
        conn.invalidate()
        return
    if getattr(dbapi, "closed", False) or type(error).__name__ == "OperationalError":
        conn.invalidate()


_executors: dict[int, TxExecutor] = {}


def for_engine(engine: sa.Engine) -> TxExecutor:
    """The engine's executor in this process."""
    ex = _executors.get(id(engine))
    if ex is None or ex.engine is not engine or ex.pid != os.getpid():
        cls = SQLiteExecutor if engine.dialect.name == "sqlite" else PostgresExecutor
        ex = _executors[id(engine)] = cls(engine)
    return ex
