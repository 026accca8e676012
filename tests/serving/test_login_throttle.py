"""Login is throttled per account and per client address (before any password is hashed), and
password hashing runs in a few slots so a flood of logins cannot take every core."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask

from serving import accounts, db
from serving.testing.fakes import FakeEngines, FakeRouter
from tests.serving.conftest import build_app

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def login_app(db_url: str, tmp_path) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    app = build_app(
        db_url,
        tmp_path,
        FakeEngines(),
        FakeRouter(),
        LOGIN_LIMIT_PER_ACCOUNT="5 per minute",
        LOGIN_LIMIT_PER_CLIENT="20 per minute",
    )
    with app.app_context(), db.write() as conn:
        accounts.create_account(conn, "victim@example.com", "right-password")
    yield app
    app.extensions["db"].dispose()


def _login(client, email: str, password: str, addr: str = "10.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post(
        LOGIN,
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": addr},
    )


def test_failed_logins_for_one_account_are_throttled(login_app):
    c = login_app.test_client()
    gate = login_app.extensions["passwords"]
    for i in range(5):  # each from a different address: only the account limit applies
        assert _login(c, "Victim@example.com", "guess", f"10.0.1.{i}").status_code == 401
    hashed = gate.count
    rv = _login(c, "victim@example.com", "right-password", "10.0.2.1")
    assert rv.status_code == 429
    err = rv.get_json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "too_many_login_attempts"
    assert "for this account" in err["message"]
    assert 1 <= int(rv.headers["Retry-After"]) <= 60
    assert gate.count == hashed  # refused before argon2 ran
    # another account is not affected, and a success clears an account's failures
    with login_app.app_context(), db.write() as conn:
        accounts.create_account(conn, "other@example.com", "pw")
    for _ in range(4):
        assert _login(c, "other@example.com", "bad", "10.0.3.1").status_code == 401
    assert _login(c, "other@example.com", "pw", "10.0.3.2").status_code == 200
    for _ in range(4):
        assert _login(c, "other@example.com", "bad", "10.0.3.3").status_code == 401
    assert _login(c, "other@example.com", "pw", "10.0.3.4").status_code == 200


def test_a_flood_from_one_address_is_throttled_before_argon2(login_app):
    c = login_app.test_client()
    gate = login_app.extensions["passwords"]
    before = gate.count
    codes = [_login(c, f"nobody{i}@example.com", "x", "192.0.2.7").status_code for i in range(60)]
    assert codes[:20] == [401] * 20 and codes[20:] == [429] * 40
    assert gate.count - before == 20  # the 40 refused attempts never hashed a password
    rv = _login(c, "victim@example.com", "right-password", "192.0.2.7")
    assert rv.status_code == 429 and "from this address" in rv.get_json()["error"]["message"]
    # the same account from another address still logs in
    assert _login(c, "victim@example.com", "right-password", "192.0.2.8").status_code == 200


def test_password_hashing_runs_in_bounded_slots(sqlite_url, tmp_path):
    app = build_app(
        sqlite_url,
        tmp_path,
        FakeEngines(),
        FakeRouter(),
        PASSWORD_HASH_CONCURRENCY=2,
        LOGIN_LIMIT_PER_CLIENT="1000 per minute",
    )
    with app.app_context(), db.write() as conn:
        for i in range(8):
            accounts.create_account(conn, f"u{i}@example.com", f"pw{i}")
    gate = app.extensions["passwords"]
    gate.peak = 0
    codes: list[int] = []
    start = threading.Barrier(8)

    def one(i: int) -> None:
        c = app.test_client()
        start.wait()
        codes.append(_login(c, f"u{i}@example.com", f"pw{i}", f"10.9.0.{i}").status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [200] * 8
    assert gate.peak == 2  # eight logins at once, never more than two hashes at a time
    app.extensions["db"].dispose()


def test_no_free_hashing_slot_is_a_503_with_retry_after(sqlite_url, tmp_path):
    app = build_app(
        sqlite_url,
        tmp_path,
        FakeEngines(),
        FakeRouter(),
        PASSWORD_HASH_CONCURRENCY=1,
        PASSWORD_HASH_WAIT_S=0.05,
    )
    gate = app.extensions["passwords"]
    with gate.slot():  # another thread is hashing
        rv = _login(app.test_client(), "a@example.com", "x")
    assert rv.status_code == 503 and rv.headers["Retry-After"] == "1"
    assert rv.get_json()["error"]["code"] == "server_busy"
    app.extensions["db"].dispose()
