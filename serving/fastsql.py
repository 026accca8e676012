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
  transactions (group commit, each job in its own savepoint) on the process's one write connection;
  processes (gunicorn workers) queue on an flock of a file beside the database; a thread of its own
  checkpoints the WAL and starts it over, between two write transactions.
- `PostgresExecutor`: a pooled connection per transaction (row locks do the queueing), and
  ``atomic(fn)`` for one self-contained statement in autocommit mode (one round trip).

Connections are set up by `serving.db` (`connect_sqlite`, `make_engine`), for the pool and for the
SQLite executor's own connections (the write connection, each thread's read connection) alike.
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
CHECKPOINT_BUSY_MS = 200
# a WAL this long is started over (`SQLiteExecutor.checkpoint`)
WAL_RESET_BYTES = 64 * 2**20
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
        self._local = threading.local()  # each thread's read connection
        self._write_cur: sqlite3.Cursor | None = None  # on the process's one write connection
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
        """This thread's own read connection (no pool check-out; reads are rare on the hot path)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = db.connect_sqlite(self.engine)
        return conn

    def _cursor(self) -> sqlite3.Cursor:
        """The write cursor, used only under the write lock: one connection per process runs every
        write transaction, whichever thread leads it (the lock lets one at a time write anyway).
        A connection per thread (one per gunicorn thread that ever led, ~70 a worker under 200
        streams) each kept its own page cache, prepared statements and lookaside memory: SQLite's
        memory in `benchmarks/soak.py` was 10-21 MiB a worker and rising, and is 2.4 MiB and flat
        with one. The cursor is kept: a new one per transaction left a weak reference behind on
        the connection each time."""
        cur = self._write_cur
        if cur is None:
            conn = db.connect_sqlite(self.engine)
            if self._lock_fd is not None:  # a file: checkpoints run off the request path
                conn.execute("PRAGMA wal_autocheckpoint=0")
                self._start_checkpointer()
            cur = self._write_cur = conn.cursor()
        return cur

    def _start_checkpointer(self) -> None:
        """One thread per process checkpoints the WAL every second (`checkpoint`). With SQLite's
        default, the commit that crosses 1,000 WAL pages does it, and that request waits; the hot
        pages (an account's row, the tables' last pages) are also copied once a second instead of
        once per thousand pages."""
        with self._pending_lock:  # (the caller may hold the write lock)
            if self._checkpointer is not None:
                return
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        conn = db.connect_sqlite(self.engine)
        # a reader that keeps an old snapshot makes the checkpoint wait; it holds every writer
        # of the server meanwhile, so it gives up soon and tries again the next round
        conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
        while True:
            time.sleep(CHECKPOINT_INTERVAL_S)
            self.checkpoint(conn)

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back into the database (PASSIVE: the writers go on); once the WAL file is
        `WAL_RESET_BYTES` long, also copy what they wrote meanwhile and make the next writer start
        the WAL over from its beginning (RESTART), between two write transactions: under this
        process's write lock and the servers' flock, so no writer of the gateway waits in SQLite's
        busy handler meanwhile.

        PASSIVE alone never lets the WAL start over under constant load: SQLite rewinds it only
        when a transaction begins after a checkpoint that copied every frame, and the other
        processes' commits always land in between. In `benchmarks/soak.py` (200 streams) the WAL
        file grew to 613 MB in 65 s, and its index (the -shm file, which every worker maps) with
        it: 1.2 MiB resident a worker, growing for as long as the load lasts. Started over at
        64 MiB, the file stays near that size and its index under 200 KiB. RESTART and not
        TRUNCATE: the writers wait for it, and cutting the file (a 64 MiB ftruncate) took the
        gateway benchmark's added p99 (1 client, json) from 6 to 60 ms; RESTART leaves it at 3 ms.
        """
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as e:  # busy with another process's checkpoint: next round
            logger.debug("checkpoint skipped: %s", e)
            return
        try:
            if os.path.getsize(f"{self.engine.url.database}-wal") < WAL_RESET_BYTES:
                return
        except OSError:  # no WAL (yet, or another process just removed it)
            return
        with self._write_lock, self._servers_lock():
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                if busy:
                    logger.debug("checkpoint not finished: a reader held an old snapshot")
            except sqlite3.Error as e:
                logger.debug("checkpoint skipped: %s", e)

    @contextmanager
    def _servers_lock(self) -> Iterator[None]:
        """The flock the servers' writers queue on (none for an in-memory database)."""
        if self._lock_fd is None:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

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
        cur = self._cursor()
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
