"""Smaller wire behaviours from the security review: models.retrieve, the endpoints not served,
the root URL, the dashboard's headers."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from serving import accounts, db
from serving.testing.fakes import FakeEngines, FakeRouter
from tests.serving.conftest import build_app

BASE = "/api/v1/inference"


def test_models_retrieve_with_the_openai_sdk(live):
    sdk = openai.OpenAI(api_key="inf_unused", base_url=f"{live.base}{BASE}", max_retries=0)
    model = sdk.models.retrieve("Qwen/Qwen3-14B")  # an id with a slash
    assert model.id == "Qwen/Qwen3-14B" and model.object == "model"
    assert model.model_extra["pricing"]["output_micros_per_mtok"] > 0
    with pytest.raises(openai.NotFoundError) as e:
        sdk.models.retrieve("no/such-model")
    assert e.value.body["code"] == "model_not_found"


def test_model_health_still_routes_beside_retrieve(client):
    assert client.get(f"{BASE}/models/local/tiny-a/health").get_json() == {
        "model": "local/tiny-a",
        "status": "ready",
    }
    assert client.get(f"{BASE}/models/local/tiny-a").get_json()["id"] == "local/tiny-a"


@pytest.mark.parametrize("endpoint", ["completions", "responses"])
def test_endpoints_not_served_say_to_use_chat_completions(live, endpoint):
    sdk = openai.OpenAI(api_key="inf_unused", base_url=f"{live.base}{BASE}", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        if endpoint == "completions":
            sdk.completions.create(model="auto", prompt="hi")
        else:
            sdk.responses.create(model="auto", input="hi")
    err = e.value.body
    assert err["code"] == "unsupported_endpoint" and err["type"] == "not_found_error"
    assert "/chat/completions" in err["message"]


def test_root_leads_to_the_dashboard(client):
    rv = client.get("/")
    assert rv.status_code == 302 and rv.headers["Location"].endswith("/dashboard/")
    rv = client.get("/", follow_redirects=True)
    assert rv.status_code == 200 and b"<form" in rv.data  # the login page
    assert client.get("/nowhere").get_json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("path", ["/dashboard/login", "/dashboard/keys", "/dashboard/nope"])
def test_dashboard_headers(client, path):
    rv = client.get(path)
    assert rv.headers["X-Content-Type-Options"] == "nosniff"
    assert rv.headers["Referrer-Policy"] == "same-origin"


def test_dashboard_static_files_are_nosniff(app, client):
    folder = Path(app.blueprints["dashboard"].static_folder)
    name = sorted(p.name for p in folder.iterdir() if p.is_file())[0]
    rv = client.get(f"/dashboard/static/{name}")
    assert rv.status_code == 200 and rv.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "field,value",
    [
        ("stream", "yes"),
        ("stream", 1),
        ("max_tokens", "10"),
        ("max_tokens", 10.5),
        ("temperature", "1"),
        ("n", "2"),
        ("logprobs", "true"),
    ],
)
def test_wire_types_are_strict(api, field, value):
    t = api.tenant()
    rv = api.chat(t, **{field: value})
    assert rv.status_code == 400, rv.get_data(as_text=True)
    err = rv.get_json()["error"]
    assert err["param"] == field and err["type"] == "invalid_request_error"
    assert api.balance(t)["reserved_micros"] == 0


def test_wire_types_of_the_right_kind_still_pass(api):
    t = api.tenant()
    rv = api.chat(t, stream=False, max_tokens=10, temperature=1, n=1, logprobs=False)
    assert rv.status_code == 200, rv.get_json()


def _login_cookie(app, **kwargs):  # type: ignore[no-untyped-def]
    rv = app.test_client().post(
        "/api/v1/auth/login", json={"email": "web@example.com", "password": "pw"}, **kwargs
    )
    assert rv.status_code == 200, rv.get_json()
    return next(h for h in rv.headers.getlist("Set-Cookie") if h.startswith("inferbase_session="))


def test_session_cookie_is_secure_over_https(sqlite_url, tmp_path):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    for hops in (0, 1):
        app = build_app(
            sqlite_url, tmp_path, FakeEngines(), FakeRouter(), PROXY_HOPS=hops, AUTO_MIGRATE=True
        )
        with app.app_context(), db.write() as conn:
            if accounts.find(conn, "web@example.com") is None:
                accounts.create_account(conn, "web@example.com", "pw")
        assert "Secure" not in _login_cookie(app)  # plain HTTP, no proxy headers
        assert "Secure" in _login_cookie(app, base_url="https://localhost")
        behind = _login_cookie(app, headers=forwarded)
        assert ("Secure" in behind) is (hops == 1)  # the header counts only from a trusted proxy
        app.extensions["db"].dispose()


def test_login_throttle_counts_the_forwarded_client_behind_a_proxy(sqlite_url, tmp_path):
    app = build_app(
        sqlite_url,
        tmp_path,
        FakeEngines(),
        FakeRouter(),
        PROXY_HOPS=1,
        LOGIN_LIMIT_PER_CLIENT="2 per minute",
    )
    c = app.test_client()

    def attempt(client_ip: str) -> int:
        return c.post(
            "/api/v1/auth/login",
            json={"email": "x@example.com", "password": "x"},
            headers={"X-Forwarded-For": client_ip},
        ).status_code

    assert [attempt("198.51.100.1") for _ in range(3)] == [401, 401, 429]
    assert attempt("198.51.100.2") == 401  # another client behind the same proxy
    app.extensions["db"].dispose()


def test_openapi_documents_the_new_routes(client):
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").get_json()
    validate(spec)
    paths = spec["paths"]
    assert "get" in paths[f"{BASE}/models/{{model_id}}"]
    for legacy in ("completions", "responses"):
        assert set(paths[f"{BASE}/{legacy}"]["post"]["responses"]) == {"404"}
    assert "post" in paths["/api/v1/auth/password"]
    assert {"429", "503"} <= set(paths["/api/v1/auth/login"]["post"]["responses"])
    params = {p["name"] for p in paths[f"{BASE}/keys"]["get"]["parameters"]}
    assert params == {"limit", "cursor"}
    schemas = spec["components"]["schemas"]
    assert schemas["KeyCreate"]["properties"]["rpm_limit"]["anyOf"][0]["maximum"] == 2**31 - 1
    cursor = next(p for p in paths[f"{BASE}/usage"]["get"]["parameters"] if p["name"] == "cursor")
    assert cursor["schema"]["anyOf"][0]["maximum"] == 2**63 - 1


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_tokens", 2**31),
        ("max_completion_tokens", 2**62),
        ("seed", 2**63),
        ("seed", -(2**63) - 1),
    ],
)
def test_chat_integers_beyond_their_range_are_400(api, field, value):
    t = api.tenant()
    rv = api.chat(t, **{field: value})
    assert rv.status_code == 400 and rv.get_json()["error"]["param"] == field
    assert api.chat(t, max_tokens=2**31 - 1, seed=2**63 - 1).status_code == 200
