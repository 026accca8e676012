"""GET /keys a page at a time, and a cap on an account's active keys (API and CLI). SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from serving.cli import cli
from tests.serving.conftest import ApiActions

BASE = "/api/v1/inference"


@pytest.fixture
def store_api(store_apps) -> ApiActions:  # type: ignore[no-untyped-def]
    return store_apps(KEYS_MAX_PER_ACCOUNT=7)  # type: ignore[no-any-return]


def test_keys_are_listed_a_page_at_a_time(store_api):
    t = store_api.tenant()
    c = store_api.client
    made = [t.key_id]
    for i in range(6):
        rv = c.post(f"{BASE}/keys", json={"name": f"k{i}"}, headers=t.headers)
        made.append(rv.get_json()["id"])
    whole = c.get(f"{BASE}/keys", headers=t.headers).get_json()
    assert whole["has_more"] is False and whole["next_cursor"] is None
    assert sorted(k["id"] for k in whole["data"]) == sorted(made)
    seen: list[str] = []
    cursor = None
    while True:
        q = f"?limit=3&cursor={cursor}" if cursor else "?limit=3"
        page = c.get(f"{BASE}/keys{q}", headers=t.headers).get_json()
        assert len(page["data"]) <= 3
        seen += [k["id"] for k in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == [k["id"] for k in whole["data"]]  # same order, each key once
    for bad in ("?limit=0", "?limit=101", "?cursor=key_nope", "?colour=red"):
        rv = c.get(f"{BASE}/keys{bad}", headers=t.headers)
        assert rv.status_code == 400, bad
    # a well-formed cursor naming no key of this account (here another account's) is a 404, as
    # GET /keys/{id} would be: the OpenAPI document allows any key id there (found by fuzzing)
    other = store_api.tenant()
    for cursor in (other.key_id, "key_0000000000000000"):
        rv = c.get(f"{BASE}/keys?cursor={cursor}", headers=t.headers)
        err = rv.get_json()["error"]
        assert rv.status_code == 404 and (err["param"], err["code"]) == ("cursor", "key_not_found")


def test_an_account_has_at_most_the_cap_of_active_keys(store_api, db_url, tmp_path):
    t = store_api.tenant()
    c = store_api.client
    ids = [c.post(f"{BASE}/keys", json={"name": "k"}, headers=t.headers).get_json()["id"]]
    for _ in range(5):
        ids.append(c.post(f"{BASE}/keys", json={"name": "k"}, headers=t.headers).get_json()["id"])
    rv = c.post(f"{BASE}/keys", json={"name": "one too many"}, headers=t.headers)  # 8th
    assert rv.status_code == 403 and rv.get_json()["error"]["code"] == "key_limit_reached"
    env = {
        "INFERBASE_HOME": str(tmp_path),
        "INFERBASE_DATABASE_URL": db_url,
        "INFERBASE_ENGINES_FACTORY": "serving.testing.fakes:make_engines",
        "INFERBASE_SECRET_KEY": store_api.app.config["SECRET_KEY"],
        "INFERBASE_KEYS_MAX_PER_ACCOUNT": "7",
    }
    r = CliRunner().invoke(cli, ["keys", "create", "--account", t.email, "--name", "x"], env=env)
    assert r.exit_code == 1 and "revoke one first" in r.output
    assert c.delete(f"{BASE}/keys/{ids[0]}", headers=t.headers).status_code == 200
    rv = c.post(f"{BASE}/keys", json={"name": "fits again"}, headers=t.headers)
    assert rv.status_code == 201
