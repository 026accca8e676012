"""The hot path's SQL: hand-written statements run on the raw DB-API cursor of a pooled connection.

SQLAlchemy Core costs ~100 µs of Python per statement here (compile cache, result set-up, events);
the per-request bookkeeping (reserve, settle, rate-limit counters) is a handful of fixed statements,
so it skips that layer. Statements are written once with ``:name`` parameters and converted to the
driver's style (sqlite3 takes ``:name``; psycopg ``%(name)s``). Table names are unqualified, so a
PostgreSQL ``search_path`` applies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")
logger = logging.getLogger(__name__)
CHECKPOINT_INTERVAL_S = 1.0
_PARAM = re.compile(r"(?<![:\w]):(\w+)")


class Dialect:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.pid = os.getpid()
        self.sqlite = engine.dialect.name == "sqlite"
        self._cache: dict[str, str] = {}
        self._local = threading.local()
        # SQLite has one writer at a time and its busy handler waits by sleeping (up to 100 ms
        # a try), which collapses throughput when many workers write. Writers queue instead:
        # threads on a lock, processes (gunicorn workers) on an flock of a file beside the
        # database, which wakes the next waiter as soon as it is released.
        self._write_lock = threading.Lock()
        self._pending: list[_Job] = []  # group commit: jobs waiting for the next write transaction
        self._pending_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._checkpointer: threading.Thread | None = None
        if self.sqlite and engine.url.database not in (None, "", ":memory:"):
            path = f"{engine.url.database}.writelock"
            self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._auto = None if self.sqlite else engine.execution_options(isolation_level="AUTOCOMMIT")

    def _sqlite(self) -> sqlite3.Connection:
        """This thread's own SQLite connection (no pool check-out on the hot path)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.engine.url.database or ":memory:",
                timeout=30,
                isolation_level=None,
                check_same_thread=False,
            )
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
                conn.execute(f"PRAGMA {pragma}")
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
        conn = sqlite3.connect(self.engine.url.database or "", timeout=30, isolation_level=None)
        while True:
            time.sleep(CHECKPOINT_INTERVAL_S)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as e:  # busy with another process's checkpoint: next round
                logger.debug("checkpoint skipped: %s", e)

    def sql(self, text: str) -> str:
        out = self._cache.get(text)
        if out is None:
            out = text if self.sqlite else _PARAM.sub(r"%(\1)s", text)
            self._cache[text] = out
        return out

    def ts(self, value: datetime) -> Any:
        """A UTC timestamp as the column type stores it (naive UTC text on SQLite)."""
        if self.sqlite:
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
        return value

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A cursor inside one write transaction (BEGIN IMMEDIATE on SQLite); commits on success."""
        if self.sqlite:
            cur = self._sqlite().cursor()
            with self._write_lock:
                if self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                try:
                    cur.execute("BEGIN IMMEDIATE")
                    yield cur
                    cur.execute("COMMIT")
                except BaseException:
                    if cur.connection.in_transaction:
                        cur.execute("ROLLBACK")
                    raise
                finally:
                    cur.close()
                    if self._lock_fd is not None:
                        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            return
        with self._pooled(commit=True) as cur:
            yield cur

    def grouped(self, fn: Callable[[Any], T]) -> T:
        """SQLite: run ``fn(cursor)`` in a write transaction shared with this process's other
        threads that are waiting to write (group commit), and return what it returns once that
        transaction has committed. Whoever takes the write lock runs every job queued so far,
        each in its own savepoint (an exception rolls back that job alone and is raised to its
        caller), then commits once: under load one BEGIN/COMMIT (and one cross-process lock)
        serves many requests; alone, a job costs what `write()` does."""
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
        cur = self._sqlite().cursor()
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
    def single(self) -> Iterator[Any]:
        """PostgreSQL: a cursor in autocommit mode, for one self-contained (atomic) statement: one
        round trip instead of BEGIN, statement, COMMIT."""
        assert self._auto is not None
        with self._auto.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            cur = dbapi.cursor()  # type: ignore[union-attr]
            try:
                yield cur
            except BaseException as e:
                if getattr(dbapi, "closed", False) or type(e).__name__ == "OperationalError":
                    conn.invalidate()
                raise
            finally:
                cur.close()

    @contextmanager
    def read(self) -> Iterator[Any]:
        if self.sqlite:
            cur = self._sqlite().cursor()
            try:
                yield cur
            finally:
                cur.close()
            return
        with self._pooled(commit=False) as cur:
            yield cur

    @contextmanager
    def _pooled(self, commit: bool) -> Iterator[Any]:
        """A cursor of a pooled (PostgreSQL) connection: committed or rolled back at the end; a
        connection the server dropped is invalidated so the pool never reuses it."""
        with self.engine.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            cur = dbapi.cursor()  # type: ignore[union-attr]
            try:
                yield cur
                if commit:
                    dbapi.commit()  # type: ignore[union-attr]
                else:
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
        dbapi.rollback()
    except Exception:
        conn.invalidate()
        return
    if getattr(dbapi, "closed", False) or type(error).__name__ == "OperationalError":
        conn.invalidate()


_dialects: dict[int, Dialect] = {}


def for_engine(engine: sa.Engine) -> Dialect:
    d = _dialects.get(id(engine))
    # one per engine and process: SQLite connections and flock descriptions must not cross a fork
    if d is None or d.engine is not engine or d.pid != os.getpid():
        d = _dialects[id(engine)] = Dialect(engine)
    return d
