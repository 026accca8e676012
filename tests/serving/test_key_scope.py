"""A key's limits are a boundary: a key created with an API key gets at most that key's pool and
rate limits, and an API key manages only itself and the keys created with it; a browser session
manages every key of the account. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.serving.conftest import ApiActions

BASE = "/api/v1/inference"


@pytest.fixture
def store_api(store_apps) -> ApiActions:  # type: ignore[no-untyped-def]
    return store_apps(DEFAULT_RPM=600)  # type: ignore[no-any-return]


def _bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def _refused(rv, param: str | None, code: str) -> None:  # type: ignore[no-untyped-def]
    assert rv.status_code == 403, rv.get_json()
    err = rv.get_json()["error"]
    assert err["code"] == code and err["param"] == param and err["type"] == "permission_error"


def test_a_limited_key_cannot_mint_a_bigger_one(store_api):
    t = store_api.tenant(rpm_limit=2, tpm_limit=1000, pool=["local/tiny-a", "local/tiny-b"])
    c = store_api.client
    for body, param in [
        ({"name": "x", "rpm_limit": 3}, "rpm_limit"),
        ({"name": "x", "tpm_limit": 1001}, "tpm_limit"),
        ({"name": "x", "model_pool": ["local/tiny-a", "Qwen/Qwen3-14B"]}, "model_pool"),
    ]:
        _refused(c.post(f"{BASE}/keys", json=body, headers=t.headers), param, "exceeds_parent_key")
    rv = c.post(f"{BASE}/keys", json={"name": "child"}, headers=t.headers)  # inherits everything
    assert rv.status_code == 201
    child = rv.get_json()
    assert (child["rpm_limit"], child["tpm_limit"]) == (2, 1000)
    assert child["model_pool"] == ["local/tiny-a", "local/tiny-b"]
    assert child["parent_key_id"] == t.key_id
    rv = c.post(
        f"{BASE}/keys",
        json={"name": "smaller", "rpm_limit": 1, "model_pool": ["local/tiny-b"]},
        headers=t.headers,
    )
    assert rv.status_code == 201 and rv.get_json()["rpm_limit"] == 1
    # the child cannot widen its own pool either
    rv = c.patch(
        f"{BASE}/keys/{child['id']}",
        json={"model_pool": ["Qwen/Qwen3-14B"]},
        headers=_bearer(child["key"]),
    )
    _refused(rv, "model_pool", "exceeds_parent_key")
    rv = c.patch(f"{BASE}/keys/{child['id']}", json={"model_pool": []}, headers=t.headers)
    _refused(rv, "model_pool", "exceeds_parent_key")  # an empty pool would mean every model
    # a key without limits of its own bounds its children by the gateway's defaults
    u = store_api.tenant()
    rv = c.post(f"{BASE}/keys", json={"name": "x", "rpm_limit": 601}, headers=u.headers)
    _refused(rv, "rpm_limit", "exceeds_parent_key")
    rv = c.post(f"{BASE}/keys", json={"name": "x", "rpm_limit": 600}, headers=u.headers)
    assert rv.status_code == 201
    # the limit really holds for the child: two requests a minute
    child_tenant = type(t)(t.account_id, t.email, child["key"], child["id"])
    assert [store_api.chat(child_tenant).status_code for _ in range(3)] == [200, 200, 429]


def test_an_api_key_manages_only_itself_and_its_descendants(store_api):
    t = store_api.tenant(password=True)
    c = store_api.client
    sibling = c.post(f"{BASE}/keys", json={"name": "sib"}, headers=t.headers).get_json()
    child = c.post(f"{BASE}/keys", json={"name": "c"}, headers=t.headers).get_json()
    grandchild = c.post(
        f"{BASE}/keys", json={"name": "g"}, headers=_bearer(child["key"])
    ).get_json()
    # a child cannot touch its parent or its sibling
    for target in (t.key_id, sibling["id"]):
        _refused(
            c.delete(f"{BASE}/keys/{target}", headers=_bearer(child["key"])),
            "key_id",
            "key_not_manageable",
        )
        _refused(
            c.patch(f"{BASE}/keys/{target}", json={"name": "p"}, headers=_bearer(child["key"])),
            "key_id",
            "key_not_manageable",
        )
    assert c.get(f"{BASE}/credits", headers=t.headers).status_code == 200  # parent still works
    # another account's key stays invisible (404, not 403)
    other = store_api.tenant()
    assert c.delete(f"{BASE}/keys/{other.key_id}", headers=t.headers).status_code == 404
    # the root key manages its grandchild; a key may rename and revoke itself
    rv = c.patch(f"{BASE}/keys/{grandchild['id']}", json={"name": "gg"}, headers=t.headers)
    assert rv.status_code == 200 and rv.get_json()["name"] == "gg"
    rv = c.patch(f"{BASE}/keys/{child['id']}", json={"name": "me"}, headers=_bearer(child["key"]))
    assert rv.status_code == 200
    rv = c.delete(f"{BASE}/keys/{child['id']}", headers=_bearer(child["key"]))
    assert rv.status_code == 200 and rv.get_json()["revoked"] is True
    # the browser session manages every key of the account
    browser = store_api.app.test_client()
    rv = browser.post("/api/v1/auth/login", json={"email": t.email, "password": "pw-" + t.email})
    csrf = rv.get_json()["csrf_token"]
    rv = browser.delete(f"{BASE}/keys/{sibling['id']}", headers={"X-CSRF-Token": csrf})
    assert rv.status_code == 200 and rv.get_json()["revoked"] is True
    rv = browser.post(
        f"{BASE}/keys", json={"name": "big", "rpm_limit": 100_000}, headers={"X-CSRF-Token": csrf}
    )
    assert rv.status_code == 201 and rv.get_json()["parent_key_id"] is None


def test_openapi_documents_the_key_model(store_api):
    spec = store_api.client.get("/openapi.json").get_json()
    post = spec["paths"][f"{BASE}/keys"]["post"]
    assert "at most that key's model pool and rate limits" in post["summary"]
    assert "403" in post["responses"]
    delete = spec["paths"][f"{BASE}/keys/{{key_id}}"]["delete"]
    assert "only itself and the keys created with it" in delete["summary"]
    assert "parent_key_id" in spec["components"]["schemas"]["KeyOut"]["properties"]
