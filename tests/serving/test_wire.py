"""Smaller wire behaviours from the security review: models.retrieve, the endpoints not served,
the root URL, the dashboard's headers."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

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
