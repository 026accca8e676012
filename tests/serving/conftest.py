"""Fixtures in the flaskr style: `app`, `client`, `runner` and an `ApiActions` helper.

The default `app` (and so `client`, `runner`, `api`, `live`) runs every test that uses it on SQLite
and on PostgreSQL: the ledger, rate limits and API behave the same on both. Each PostgreSQL test
gets its own schema (dropped afterwards), so runs never collide. PostgreSQL is skipped when
unreachable unless INFERBASE_REQUIRE_POSTGRES=1 (CI). `sqlite_url` is for the tests that are about
SQLite itself.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from serving import accounts, create_app, db, keys
from serving.testing.fakes import FakeEngines, FakeRouter

PG_URL = os.environ.get(
    "INFERBASE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/core_test"
)
REQUIRE_PG = os.environ.get("INFERBASE_REQUIRE_POSTGRES") == "1"


def free_port() -> int:
    """A port the system says is free now (never a fixed one another run may hold)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_available() -> bool:
    try:
        eng = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with eng.connect():
            pass
        eng.dispose()
        return True
    except sa.exc.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_ok() -> bool:
    ok = _pg_available()
    if not ok and REQUIRE_PG:
        pytest.fail(f"PostgreSQL required but unreachable at {PG_URL}")
    return ok


def make_db_url(kind: str, tmp_path: Path, pg_ok: bool) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not pg_ok:
        pytest.skip("PostgreSQL unreachable")
    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_ok: bool) -> Iterator[str]:
    yield from make_db_url(request.param, tmp_path, pg_ok)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def engines() -> FakeEngines:
    return FakeEngines()


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter()


def build_app(url: str, home: Path, engines: Any, router: Any, **extra: Any) -> Flask:
    cfg = {
        "TESTING": True,
        "HOME": str(home),
        "DATABASE_URL": url,
        "SECRET_KEY": "test-secret-" + "x" * 32,
        "ENGINES": engines,
        "ROUTER": router,
        "AUTO_MIGRATE": True,
        "REDIS_URL": None,
        **extra,
    }
    return create_app(cfg)


@pytest.fixture
def app(db_url: str, tmp_path: Path, engines: FakeEngines, router: FakeRouter) -> Iterator[Flask]:
    app = build_app(db_url, tmp_path, engines, router)
    yield app
    app.extensions["db"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()


@dataclass
class Tenant:
    account_id: int
    email: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class ApiActions:
    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client

    def tenant(
        self,
        email: str | None = None,
        credits_micros: int = 10_000_000,
        password: bool = False,
        **key_opts: Any,
    ) -> Tenant:
        email = email or f"u{secrets.token_hex(4)}@example.com"
        with self.app.app_context(), db.write() as conn:
            account_id = accounts.create_account(
                conn, email, "pw-" + email if password else None, credits_micros
            )
            row, raw = keys.create(
                conn,
                self.app.extensions["auth"].secret,
                account_id,
                "test",
                list(key_opts.pop("pool", [])),
                key_opts.pop("optimize", "balanced"),
                **key_opts,
            )
        return Tenant(account_id, email, raw, row["id"])

    def chat(self, tenant: Tenant, **body: Any) -> Any:
        payload = {"model": "local/tiny-a", "messages": [{"role": "user", "content": "hi there"}]}
        payload.update(body)
        return self.client.post(
            "/api/v1/inference/chat/completions", json=payload, headers=tenant.headers
        )

    def balance(self, tenant: Tenant) -> dict[str, int]:
        from serving import ledger

        with self.app.app_context(), db.read() as conn:
            return ledger.balance(conn, tenant.account_id)


@pytest.fixture
def api(app: Flask, client: FlaskClient) -> ApiActions:
    return ApiActions(app, client)


class LiveServer:
    def __init__(self, app: Flask) -> None:
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live(app: Flask) -> Iterator[LiveServer]:
    server = LiveServer(app)
    yield server
    server.stop()


@pytest.fixture
def store_apps(db_url: str, tmp_path: Path) -> Iterator[Any]:
    """`make(**config)`: an `ApiActions` over a new app on this test's database (SQLite, then
    PostgreSQL), disposed of afterwards."""
    made: list[Flask] = []

    def make(**config: Any) -> ApiActions:
        app = build_app(db_url, tmp_path, FakeEngines(), FakeRouter(), **config)
        made.append(app)
        return ApiActions(app, app.test_client())

    yield make
    for app in made:
        app.extensions["db"].dispose()


@pytest.fixture
def store_api(store_apps: Any) -> ApiActions:
    """`api` on SQLite and on PostgreSQL."""
    return store_apps()  # type: ignore[no-any-return]
