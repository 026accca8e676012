"""CORS for browser apps: off by default; with CORS_ORIGINS, the listed origins may call the
inference API with an API key (never with the session cookie), chat included."""

from __future__ import annotations

import pytest

from serving.testing.fakes import FakeEngines, FakeRouter
from tests.serving.conftest import ApiActions, build_app

BASE = "/api/v1/inference"
APP_ORIGIN = "https://app.example.com"


def _preflight(client, origin: str):  # type: ignore[no-untyped-def]
    return client.options(
        f"{BASE}/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_cors_is_off_by_default(api):
    t = api.tenant()
    rv = _preflight(api.client, APP_ORIGIN)
    assert "Access-Control-Allow-Origin" not in rv.headers
    rv = api.client.get(f"{BASE}/credits", headers={**t.headers, "Origin": APP_ORIGIN})
    assert rv.status_code == 200 and "Access-Control-Allow-Origin" not in rv.headers


@pytest.fixture
def cors_api(sqlite_url, tmp_path):  # type: ignore[no-untyped-def]
    app = build_app(sqlite_url, tmp_path, FakeEngines(), FakeRouter(), CORS_ORIGINS=[APP_ORIGIN])
    yield ApiActions(app, app.test_client())
    app.extensions["db"].dispose()


def test_listed_origins_may_call_the_api_with_a_key(cors_api):
    t = cors_api.tenant()
    c = cors_api.client
    rv = _preflight(c, APP_ORIGIN)
    assert rv.status_code == 200
    assert rv.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "authorization" in rv.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in rv.headers  # no cookies across origins
    body = {"model": "local/tiny-a", "messages": [{"role": "user", "content": "hi"}]}
    rv = c.post(f"{BASE}/chat/completions", json=body, headers={**t.headers, "Origin": APP_ORIGIN})
    assert rv.status_code == 200
    assert rv.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "X-Request-Id" in rv.headers["Access-Control-Expose-Headers"]
    rv = c.post(f"{BASE}/chat/completions", json=body, headers={"Origin": APP_ORIGIN})
    assert rv.status_code == 401 and rv.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    # another origin, and the dashboard and auth routes, stay closed
    rv = _preflight(c, "https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in rv.headers
    rv = c.options(
        "/api/v1/auth/login",
        headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in rv.headers
