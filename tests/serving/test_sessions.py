"""Browser sessions end server-side: after logout or a password change the old JWT cookie no
longer works, even replayed from another client. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from click.testing import CliRunner

from serving.auth import SESSION_COOKIE

BASE = "/api/v1/inference"
AUTH = "/api/v1/auth"


def _login(app, email: str, password: str):  # type: ignore[no-untyped-def]
    """A fresh browser: (client, raw session cookie, csrf token)."""
    c = app.test_client()
    rv = c.post(f"{AUTH}/login", json={"email": email, "password": password})
    assert rv.status_code == 200, rv.get_json()
    return c, c.get_cookie(SESSION_COOKIE).value, rv.get_json()["csrf_token"]


def _with_cookie(app, token: str):  # type: ignore[no-untyped-def]
    c = app.test_client()
    c.set_cookie(SESSION_COOKIE, token)
    return c


def test_logout_ends_the_session_server_side(store_api):
    app = store_api.app
    t = store_api.tenant(password=True)
    browser, token, _ = _login(app, t.email, "pw-" + t.email)
    other, other_token, _ = _login(app, t.email, "pw-" + t.email)  # a second browser
    assert browser.get(f"{BASE}/credits").status_code == 200
    assert browser.post(f"{AUTH}/logout").status_code == 204
    rv = _with_cookie(app, token).get(f"{BASE}/credits")  # the old cookie, replayed
    assert rv.status_code == 401 and rv.get_json()["error"]["code"] == "invalid_session"
    assert _with_cookie(app, token).get("/dashboard/keys").status_code == 302  # to the login page
    assert other.get(f"{BASE}/credits").status_code == 200  # only that session ended
    assert _with_cookie(app, other_token).get(f"{BASE}/credits").status_code == 200
    # a cookie signed with the right secret but naming no session row never worked
    forged = jwt.encode(
        {"sub": str(t.account_id), "csrf": "x", "exp": datetime.now(UTC) + timedelta(days=1)},
        app.config["SECRET_KEY"],
        algorithm="HS256",
    )
    assert _with_cookie(app, forged).get(f"{BASE}/credits").status_code == 401


def test_password_change_ends_every_session(store_api):
    app = store_api.app
    t = store_api.tenant(password=True)
    old_pw, new_pw = "pw-" + t.email, "a new long password"
    a, a_token, a_csrf = _login(app, t.email, old_pw)
    b, b_token, _ = _login(app, t.email, old_pw)
    body = {"current_password": old_pw, "new_password": new_pw}
    assert a.post(f"{AUTH}/password", json=body).status_code == 403  # CSRF token required
    rv = a.post(f"{AUTH}/password", json=body, headers={"X-CSRF-Token": a_csrf})
    assert rv.status_code == 200, rv.get_json()
    assert rv.get_json()["object"] == "session"
    assert a.get(f"{BASE}/credits").status_code == 200  # this browser got a new session
    for token in (a_token, b_token):
        assert _with_cookie(app, token).get(f"{BASE}/credits").status_code == 401
    assert b.get(f"{BASE}/credits").status_code == 401
    c = app.test_client()
    assert c.post(f"{AUTH}/login", json={"email": t.email, "password": old_pw}).status_code == 401
    assert c.post(f"{AUTH}/login", json={"email": t.email, "password": new_pw}).status_code == 200
    # a wrong current password, a short new one, or an API key: refused
    csrf = a.get_cookie("inferbase_csrf").value
    rv = a.post(
        f"{AUTH}/password",
        json={"current_password": "nope", "new_password": "whatever123"},
        headers={"X-CSRF-Token": csrf},
    )
    assert rv.status_code == 400 and rv.get_json()["error"]["param"] == "current_password"
    rv = a.post(
        f"{AUTH}/password",
        json={"current_password": new_pw, "new_password": "short"},
        headers={"X-CSRF-Token": csrf},
    )
    assert rv.status_code == 400 and rv.get_json()["error"]["param"] == "new_password"
    rv = app.test_client().post(f"{AUTH}/password", json=body, headers=t.headers)
    assert rv.status_code == 403 and rv.get_json()["error"]["code"] == "session_required"


def test_cli_set_password_ends_every_session(store_api, db_url, tmp_path):
    app = store_api.app
    t = store_api.tenant(password=True)
    _, token, _ = _login(app, t.email, "pw-" + t.email)
    from serving.cli import cli

    env = {
        "INFERBASE_HOME": str(tmp_path),
        "INFERBASE_DATABASE_URL": db_url,
        "INFERBASE_ENGINES_FACTORY": "serving.testing.fakes:make_engines",
        "INFERBASE_SECRET_KEY": app.config["SECRET_KEY"],
    }
    r = CliRunner().invoke(
        cli, ["accounts", "set-password", t.email, "--password", "brand-new-pw"], env=env
    )
    assert r.exit_code == 0 and "1 session(s) ended" in r.output, r.output
    assert _with_cookie(app, token).get(f"{BASE}/credits").status_code == 401
    _login(app, t.email, "brand-new-pw")
