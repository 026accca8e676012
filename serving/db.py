"""Database engine (SQLAlchemy Core) and migrations (Alembic).

One engine per app in ``app.extensions["db"]``. SQLite runs in WAL mode with a busy timeout, and
write transactions are ``BEGIN IMMEDIATE`` (``db.write()``) so concurrent workers queue instead of
failing; PostgreSQL relies on row locks taken by conditional UPDATEs. Every SQLite connection, the
pool's and the hot path's own (`serving.fastsql`), is opened by `connect_sqlite`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def connect_sqlite(engine: sa.Engine) -> sqlite3.Connection:
    """A new connection to `engine`'s SQLite database, set up the one way every SQLite connection
    here is (the engine's pool and `fastsql`'s own connections alike): autocommit at the driver
    (BEGIN is issued explicitly), WAL, the engine's `synchronous` level, a 30 s busy timeout, and
    foreign keys enforced."""
    conn = sqlite3.connect(
        engine.url.database or ":memory:",
        timeout=30,
        isolation_level=None,
        check_same_thread=False,
    )
    synchronous = engine.get_execution_options().get("sqlite_synchronous", "NORMAL")
    _wal(conn)
    for pragma in (f"synchronous={synchronous}", "busy_timeout=30000", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _wal(conn: sqlite3.Connection, within_s: float = 30.0) -> None:
    """Put the database in WAL mode (it stays so). Processes that open a new database together
    (gunicorn's workers at boot) race for the exclusive lock this takes, and SQLite answers the
    loser "database is locked" at once, without its busy handler (which would deadlock there), so
    the loser tries again; by then the winner has usually made it WAL and there is nothing to do."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def make_engine(url: str, pool_size: int = 16, synchronous: str = "NORMAL") -> sa.Engine:
    """The app's engine. SQLite: connections from `connect_sqlite`, write transactions as BEGIN
    IMMEDIATE (`write()`); `synchronous` is SQLite's durability level (OFF for a file whose loss
    on a crash is harmless)."""
    if url.startswith("sqlite"):
        engine: sa.Engine = sa.create_engine(
            url,
            creator=lambda: connect_sqlite(engine),  # (called on first use, after the next line)
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        engine.update_execution_options(sqlite_synchronous=synchronous)

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            immediate = conn.get_execution_options().get("immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    # No pre-ping (it would add a round trip to every request): a connection that fails is
    # invalidated instead (see fastsql), and connections are recycled every 30 minutes.
    return sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


def get_engine(app: Flask | None = None) -> sa.Engine:
    return (app or current_app).extensions["db"]


@contextmanager
def write(engine: sa.Engine | None = None) -> Iterator[sa.Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite). Commits on success, rolls back on error."""
    eng = engine or get_engine()
    with eng.connect() as conn:
        conn = conn.execution_options(immediate=True)
        with conn.begin():
            yield conn


@contextmanager
def read(engine: sa.Engine | None = None) -> Iterator[sa.Connection]:
    eng = engine or get_engine()
    with eng.connect() as conn:
        yield conn


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to `revision` on `engine`'s database."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"], int(app.config["DB_POOL_SIZE"]))
    app.extensions["db"] = engine
    if app.config.get("AUTO_MIGRATE"):
        upgrade(engine)
