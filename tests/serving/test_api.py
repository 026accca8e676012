"""Keys, credits, transactions, usage, sessions, models, OpenAPI: every endpoint, every error code,
and tenant isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from openapi_spec_validator import validate

from serving import accounts, db

BASE = "/api/v1/inference"


def test_auth_errors(api, app):
    c = api.client
    rv = c.get(f"{BASE}/credits")
    assert rv.status_code == 401 and rv.get_json()["error"]["code"] == "missing_api_key"
    rv = c.get(f"{BASE}/credits", headers={"Authorization": "Bearer inf_wrong"})
    assert rv.status_code == 401 and rv.get_json()["error"]["type"] == "authentication_error"
    rv = c.get(f"{BASE}/credits", headers={"Authorization": "Basic abc"})
    assert rv.status_code == 401
    t = api.tenant()
    with app.app_context(), db.write() as conn:
        accounts.deactivate(conn, t.email)
    rv = c.get(f"{BASE}/credits", headers=t.headers)
    assert rv.status_code == 403 and rv.get_json()["error"]["code"] == "account_deactivated"
    assert api.chat(t).status_code == 403


def test_keys_crud_and_revocation(api):
    t = api.tenant()
    c = api.client
    rv = c.post(
        f"{BASE}/keys",
        headers=t.headers,
        json={
            "name": "Production",
            "model_pool": ["local/tiny-a", "Qwen/Qwen3-14B"],
            "optimize_mode": "cost",
        },
    )
    assert rv.status_code == 201, rv.get_json()
    created = rv.get_json()
    raw = created["key"]
    assert raw.startswith("inf_") and len(raw) >= 4 + 43  # 32 bytes url-safe
    assert created["prefix"] == raw[:12] and created["optimize_mode"] == "cost"
    new = {"Authorization": f"Bearer {raw}"}
    listed = c.get(f"{BASE}/keys", headers=new).get_json()["data"]
    assert {k["id"] for k in listed} == {t.key_id, created["id"]}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    rv = c.patch(
        f"{BASE}/keys/{created['id']}",
        headers=new,
        json={"name": "Renamed", "optimize_mode": "latency", "model_pool": ["local/tiny-a"]},
    )
    assert rv.status_code == 200
    assert rv.get_json()["name"] == "Renamed" and rv.get_json()["model_pool"] == ["local/tiny-a"]
    for body, param in [
        ({"model_pool": ["nope/x"]}, "model_pool"),
        ({"optimize_mode": "fast"}, "optimize_mode"),
        ({"colour": "red"}, "colour"),
    ]:
        rv = c.patch(f"{BASE}/keys/{created['id']}", headers=new, json=body)
        assert rv.status_code == 400 and rv.get_json()["error"]["param"] == param
    rv = c.post(f"{BASE}/keys", headers=new, json={"name": "x", "model_pool": ["nope/x"]})
    assert rv.status_code == 400 and rv.get_json()["error"]["param"] == "model_pool"
    assert c.delete(f"{BASE}/keys/key_doesnotexist", headers=new).status_code == 404
    rv = c.delete(f"{BASE}/keys/{created['id']}", headers=t.headers)
    assert rv.status_code == 200 and rv.get_json()["revoked"] is True
    rv = c.get(f"{BASE}/credits", headers=new)
    assert rv.status_code == 403 and rv.get_json()["error"]["code"] == "key_revoked"
    rv = api.chat(type(t)(t.account_id, t.email, raw, created["id"]))
    assert rv.status_code == 403


def test_revoked_key_cached_for_chat_is_refused_at_once(api):
    t = api.tenant()
    assert api.chat(t).status_code == 200  # the key is now in this worker's cache
    other = api.client.__class__(api.app)  # a second client; same worker process
    assert other.delete(f"{BASE}/keys/{t.key_id}", headers=t.headers).status_code == 200
    api.app.extensions["auth"].cache.ttl_s = 3600  # the cache alone would still accept it
    rv = api.chat(t)
    assert rv.status_code == 403 and rv.get_json()["error"]["code"] == "key_revoked"


def test_tenant_isolation(api):
    a, b = api.tenant(), api.tenant()
    assert api.chat(a).status_code == 200
    c = api.client
    # B cannot see, change or revoke A's key
    assert (
        c.patch(f"{BASE}/keys/{a.key_id}", headers=b.headers, json={"name": "x"}).status_code == 404
    )
    assert c.delete(f"{BASE}/keys/{a.key_id}", headers=b.headers).status_code == 404
    assert [k["id"] for k in c.get(f"{BASE}/keys", headers=b.headers).get_json()["data"]] == [
        b.key_id
    ]
    assert c.get(f"{BASE}/usage", headers=b.headers).get_json()["data"] == []
    assert c.get(f"{BASE}/usage?key_id={a.key_id}", headers=b.headers).get_json()["data"] == []
    txns = c.get(f"{BASE}/credits/transactions", headers=b.headers).get_json()["data"]
    assert [t["kind"] for t in txns] == ["deposit"]
    assert c.get(f"{BASE}/credits", headers=b.headers).get_json()["balance_micros"] == 10_000_000
    assert len(c.get(f"{BASE}/usage", headers=a.headers).get_json()["data"]) == 1
    assert c.get(f"{BASE}/keys", headers=a.headers).status_code == 200  # A's key still live


def test_credits_transactions_pagination(api):
    t = api.tenant(credits_micros=5_000_000)
    for _ in range(3):
        assert api.chat(t).status_code == 200
    c = api.client
    credits = c.get(f"{BASE}/credits", headers=t.headers).get_json()
    assert credits["reserved_micros"] == 0
    assert credits["available_micros"] == credits["balance_micros"] < 5_000_000
    assert credits["balance"] == str(credits["available_micros"] / 1_000_000).rstrip("0")
    seen, cursor = [], None
    while True:
        q = "?limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = c.get(f"{BASE}/credits/transactions{q}", headers=t.headers).get_json()
        seen += page["data"]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert len(seen) == 1 + 3 * 3
    assert [s["id"] for s in seen] == sorted((s["id"] for s in seen), reverse=True)
    assert seen[-1]["kind"] == "deposit"
    assert sum(s["amount_micros"] for s in seen) == credits["available_micros"]
    rv = c.get(f"{BASE}/credits/transactions?limit=1000", headers=t.headers)
    assert rv.status_code == 400 and rv.get_json()["error"]["param"] == "limit"


def test_usage_filters_and_fields(api):
    t = api.tenant(pool=["local/tiny-a", "local/tiny-b"])
    assert api.chat(t).status_code == 200
    assert api.chat(t, model="local/tiny-b").status_code == 200
    assert api.chat(t, model="auto").status_code == 200
    c = api.client
    rows = c.get(f"{BASE}/usage", headers=t.headers).get_json()["data"]
    assert [r["requested_model"] for r in rows] == ["auto", "local/tiny-b", "local/tiny-a"]
    routed = rows[0]
    assert routed["routing_task"] == "general_qa" and routed["routing_complexity"] == "simple"
    assert routed["routing_confidence"] == 0.9 and routed["routing_time_ms"] == 0.5
    for r in rows:
        assert r["total_tokens"] == r["prompt_tokens"] + r["completion_tokens"] > 0
        assert r["cost_micros"] > 0 and r["latency_ms"] > 0 and r["status"] == "success"
    only_b = c.get(f"{BASE}/usage?model=local/tiny-b", headers=t.headers).get_json()["data"]
    assert len(only_b) == 1
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert (
        c.get(f"{BASE}/usage", query_string={"start": future}, headers=t.headers).get_json()["data"]
        == []
    )
    assert (
        len(
            c.get(
                f"{BASE}/usage", query_string={"start": past, "end": future}, headers=t.headers
            ).get_json()["data"]
        )
        == 3
    )
    assert (
        len(c.get(f"{BASE}/usage?key_id={t.key_id}&limit=2", headers=t.headers).get_json()["data"])
        == 2
    )
    rv = c.get(f"{BASE}/usage?start=yesterday", headers=t.headers)
    assert rv.status_code == 400 and rv.get_json()["error"]["param"] == "start"


def test_session_login_csrf_logout(api):
    t = api.tenant(password=True)
    c = api.client
    rv = c.post("/api/v1/auth/login", json={"email": t.email, "password": "wrong"})
    assert rv.status_code == 401
    rv = c.post("/api/v1/auth/login", json={"email": t.email.upper(), "password": "pw-" + t.email})
    assert rv.status_code == 200
    cookie = rv.headers.getlist("Set-Cookie")
    session_cookie = next(h for h in cookie if h.startswith("inferbase_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    csrf = rv.get_json()["csrf_token"]
    assert c.get(f"{BASE}/credits").status_code == 200  # cookie auth, safe method
    rv = c.post(f"{BASE}/keys", json={"name": "web"})
    assert rv.status_code == 403 and rv.get_json()["error"]["code"] == "csrf_failed"
    rv = c.post(f"{BASE}/keys", json={"name": "web"}, headers={"X-CSRF-Token": "forged"})
    assert rv.status_code == 403
    rv = c.post(f"{BASE}/keys", json={"name": "web"}, headers={"X-CSRF-Token": csrf})
    assert rv.status_code == 201
    assert c.post("/api/v1/auth/logout").status_code == 204
    assert c.get(f"{BASE}/credits").status_code == 401
    rv = c.post("/api/v1/auth/login", json={"email": "x"})
    assert rv.status_code == 400 and rv.get_json()["error"]["param"] == "email"


def test_models_and_health(api, engines):
    c = api.client
    data = c.get(f"{BASE}/models").get_json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["local/tiny-a", "local/tiny-b", "Qwen/Qwen3-14B"]
    assert c.get(f"{BASE}/models/Qwen/Qwen3-14B/health").get_json() == {
        "model": "Qwen/Qwen3-14B",
        "status": "ready",
    }
    engines.health_["local/tiny-b"] = "loading"
    assert c.get(f"{BASE}/models/local/tiny-b/health").get_json()["status"] == "loading"
    rv = c.get(f"{BASE}/models/no/such/health")
    assert rv.status_code == 404 and rv.get_json()["error"]["code"] == "model_not_found"


def test_http_errors_are_openai_shaped(api):
    c = api.client
    rv = c.get(f"{BASE}/chat/completions")
    assert rv.status_code == 405 and set(rv.get_json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert c.get("/nowhere").get_json()["error"]["type"] == "not_found_error"


def test_openapi_is_valid_and_complete(api):
    for path in ("/openapi.json", f"{BASE}/openapi.json"):
        spec = api.client.get(path).get_json()
        validate(spec)
    assert spec["openapi"].startswith("3.1")
    paths = spec["paths"]
    for p, m in [
        (f"{BASE}/chat/completions", "post"),
        (f"{BASE}/models", "get"),
        (f"{BASE}/models/{{model_id}}/health", "get"),
        (f"{BASE}/keys", "post"),
        (f"{BASE}/keys", "get"),
        (f"{BASE}/keys/{{key_id}}", "patch"),
        (f"{BASE}/keys/{{key_id}}", "delete"),
        (f"{BASE}/credits", "get"),
        (f"{BASE}/credits/transactions", "get"),
        (f"{BASE}/usage", "get"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
    ]:
        assert m in paths[p], (p, m)
    chat_schema = spec["components"]["schemas"]["ChatCompletionRequest"]
    assert chat_schema["properties"]["temperature"]["anyOf"][0]["maximum"] == 2
    assert {"402", "404", "429", "502"} <= set(
        paths[f"{BASE}/chat/completions"]["post"]["responses"]
    )


def test_request_id_is_ours_and_the_clients_is_kept_apart(api, caplog):
    """A client's X-Request-Id is never trusted as the request id (it could collide with or
    impersonate another request in the logs); it comes back as X-Client-Request-Id and is logged
    beside ours. OpenAI's X-Client-Request-Id works the same way; a malformed one is dropped."""
    caplog.set_level("INFO", logger="serving")
    rv = api.client.get(f"{BASE}/models/nope", headers={"X-Request-Id": "abc-123"})
    rid = rv.headers["X-Request-Id"]
    assert rid.startswith("req_") and rid != "abc-123"
    assert rv.headers["X-Client-Request-Id"] == "abc-123"
    line = next(r.getMessage() for r in caplog.records if rid in r.getMessage())
    assert "client_request_id=abc-123" in line
    rv = api.client.get(f"{BASE}/models", headers={"X-Client-Request-Id": "sdk-7"})
    assert rv.headers["X-Client-Request-Id"] == "sdk-7"
    rv = api.client.get(f"{BASE}/models", headers={"X-Request-Id": "bad id\twith spaces"})
    assert "X-Client-Request-Id" not in rv.headers
    other = api.client.get(f"{BASE}/models").headers["X-Request-Id"]
    assert other.startswith("req_") and other != rid
