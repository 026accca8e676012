"""Learning from traffic (issue #15): opt-in capture, retention and deletion, feedback, side-by-side
comparisons billed to the evaluation account, votes, verdicts and the NDJSON export; on SQLite and
PostgreSQL through the `app` fixture."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import orjson
import sqlalchemy as sa

from serving import accounts, compare, db, ledger, traffic
from serving.cli import cli
from serving.schema import captures, feedback, pair_verdicts, pair_votes, pairs, usage_logs, utcnow
from tests.serving.test_chat import data_frames

FEEDBACK = "/api/v1/inference/feedback"
TRAFFIC = "/api/v1/traffic"
POOL = ["local/tiny-a", "local/tiny-b"]


def rows(app, table, **where):
    with app.app_context(), db.read() as conn:
        q = sa.select(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        return [dict(r) for r in conn.execute(q).mappings()]


def answer_of(rv):
    return rv.get_json()["choices"][0]["message"]["content"]


def test_capture_is_off_unless_the_key_opts_in(api, app, caplog):
    t = api.tenant()
    for stream in (False, True):
        rv = api.chat(t, model="auto", stream=stream)
        assert rv.status_code == 200
        rv.close()
    assert rows(app, captures) == []
    assert len(rows(app, usage_logs, account_id=t.account_id)) == 2


def test_captured_json_and_stream_store_messages_routing_and_answer(api, app, engines, caplog):
    t = api.tenant(capture_rate=1.0)
    secret = "my secret prompt about otters"
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": secret}]
    rv = api.chat(t, model="auto", messages=msgs)
    assert rv.status_code == 200
    rid = rv.headers["X-Request-Id"]
    got = answer_of(rv)
    rv = api.chat(t, model="local/tiny-b", messages=msgs, stream=True)
    sid = rv.headers["X-Request-Id"]
    streamed = "".join(
        (json.loads(f)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for f in data_frames(rv)
        if f != "[DONE]" and json.loads(f).get("object") == "chat.completion.chunk"
    )
    by_id = {r["id"]: r for r in rows(app, captures)}
    assert set(by_id) == {rid, sid}
    auto = by_id[rid]
    assert auto["account_id"] == t.account_id and auto["key_id"] == t.key_id
    assert orjson.loads(auto["messages"]) == msgs
    assert auto["answer"] == got == engines.reply
    assert auto["requested_model"] == "auto" and auto["task"] == "general_qa"
    assert orjson.loads(auto["routing"])["model"] == auto["served_model"]
    s = by_id[sid]
    assert s["answer"] == streamed == engines.reply  # the stream's assembled text
    assert s["routing"] is None and s["task"] is None and s["served_model"] == "local/tiny-b"
    # the usage row carries the same id as the response's X-Request-Id
    assert {r["id"] for r in rows(app, usage_logs, account_id=t.account_id)} == {rid, sid}
    assert secret not in caplog.text  # prompts never reach the logs


def test_failed_requests_are_not_captured(api, app, engines):
    t = api.tenant(capture_rate=1.0)
    engines.fail_after = 2
    rv = api.chat(t, stream=True)
    data_frames(rv)
    assert rows(app, captures) == []


def test_sampling_captures_a_share(api, app):
    t = api.tenant(capture_rate=0.5)
    for _ in range(40):
        assert api.chat(t).status_code == 200
    n = len(rows(app, captures))
    assert 0 < n < 40  # (all or none: 2 * 0.5**40)
    assert not any(traffic.sampled(0.0) for _ in range(1000))
    assert all(traffic.sampled(1.0) for _ in range(1000))


def test_capture_is_set_by_api_on_create_and_update(api, app, client):
    t = api.tenant()
    h = t.headers
    rv = client.post("/api/v1/inference/keys", json={"name": "c", "capture_rate": 0.25}, headers=h)
    assert rv.status_code == 201, rv.get_json()
    new = rv.get_json()
    assert new["capture_rate"] == 0.25 and new["compare_rate"] is None
    for bad in (1.5, -0.1, "all"):
        rv = client.post(
            "/api/v1/inference/keys", json={"name": "c", "capture_rate": bad}, headers=h
        )
        assert rv.status_code == 400 and rv.get_json()["error"]["param"] == "capture_rate"
    rv = client.patch(
        f"/api/v1/inference/keys/{t.key_id}",
        json={"capture_rate": 1.0, "compare_rate": 0.5},
        headers=h,
    )
    assert rv.status_code == 200
    assert (rv.get_json()["capture_rate"], rv.get_json()["compare_rate"]) == (1.0, 0.5)
    assert api.chat(t).status_code == 200  # the key's cached settings were evicted on update
    assert len(rows(app, captures, key_id=t.key_id)) == 1
    rv = client.patch(f"/api/v1/inference/keys/{t.key_id}", json={"capture_rate": 0}, headers=h)
    assert rv.get_json()["capture_rate"] == 0.0
    assert api.chat(t).status_code == 200
    assert len(rows(app, captures, key_id=t.key_id)) == 1


def test_cli_sets_capture(api, app, runner):
    t = api.tenant()
    r = runner.invoke(
        cli, args=["keys", "create", "--account", t.email, "--name", "cap", "--capture", "0.3"]
    )
    assert r.exit_code == 0, r.output
    key_id = r.output.split()[1]
    assert rows(app, sa.Table("api_keys", sa.MetaData(), autoload_with=app.extensions["db"]),
                id=key_id)[0]["capture_rate"] == 0.3  # fmt: skip
    r = runner.invoke(
        cli, args=["keys", "create", "--account", t.email, "--name", "x", "--capture", "2"]
    )
    assert r.exit_code != 0
    r = runner.invoke(cli, args=["keys", "capture", t.key_id, "1"])
    assert r.exit_code == 0 and "capture_rate=1.0" in r.output
    assert api.chat(t).status_code == 200
    assert len(rows(app, captures, key_id=t.key_id)) == 1


def _age(app, table, days):
    with app.app_context(), db.write() as conn:
        conn.execute(table.update().values(created_at=utcnow() - timedelta(days=days)))


def test_retention_sweep_deletes_old_traffic_only(api, app, runner):
    app.config["EVAL_ACCOUNT"] = _eval_account(api)
    t = api.tenant(capture_rate=1.0, compare_rate=1.0, pool=POOL)
    rid = api.chat(t, model="auto").headers["X-Request-Id"]
    assert compare.get(app).drain()
    pair_id = rows(app, pairs)[0]["id"]
    _vote_and_verdict(api, t, pair_id)
    assert api.client.post(FEEDBACK, json={"request_id": rid, "rating": 1}, headers=t.headers)
    for table in (captures, pairs, feedback):
        _age(app, table, 31)
    fresh = api.chat(t).headers["X-Request-Id"]  # a new capture, inside the limit
    r = runner.invoke(cli, args=["traffic", "sweep"])
    assert r.exit_code == 0, r.output
    assert [c["id"] for c in rows(app, captures)] == [fresh]
    assert rows(app, pairs) == [] and rows(app, pair_votes) == [] and rows(app, pair_verdicts) == []
    assert rows(app, feedback) == []
    assert len(rows(app, usage_logs, account_id=t.account_id)) == 2  # billing records stay


def test_revoking_a_key_or_deactivating_the_account_deletes_its_traffic(api, app, client):
    app.config["EVAL_ACCOUNT"] = _eval_account(api)
    t = api.tenant(capture_rate=1.0, compare_rate=1.0, pool=POOL)
    with app.app_context(), db.write() as conn:
        from serving import keys

        row, raw = keys.create(conn, app.extensions["auth"].secret, t.account_id, "k2", POOL,
                               capture_rate=1.0, compare_rate=0.0)  # fmt: skip
    other = {"Authorization": f"Bearer {raw}"}
    rid = api.chat(t, model="auto").headers["X-Request-Id"]
    assert compare.get(app).drain()
    client.post(FEEDBACK, json={"request_id": rid, "rating": -1}, headers=t.headers)
    _vote_and_verdict(api, t, rows(app, pairs)[0]["id"])
    rv = client.post(
        "/api/v1/inference/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
        headers=other,
    )
    assert rv.status_code == 200
    assert len(rows(app, captures)) == 2 and len(rows(app, pairs)) == 1
    rv = client.delete(f"/api/v1/inference/keys/{t.key_id}", headers=other)
    assert rv.status_code == 403  # (not its key to manage) and nothing deleted
    assert len(rows(app, captures)) == 2 and len(rows(app, pairs)) == 1
    rv = client.delete(f"/api/v1/inference/keys/{t.key_id}", headers=t.headers)
    assert rv.status_code == 200
    assert [c["key_id"] for c in rows(app, captures)] == [row["id"]]
    assert rows(app, pairs) == [] and rows(app, feedback) == []
    assert rows(app, pair_votes) == [] and rows(app, pair_verdicts) == []
    with app.app_context(), db.write() as conn:
        accounts.deactivate(conn, t.email)
    assert rows(app, captures) == []


def test_feedback(api, app, client):
    t = api.tenant(capture_rate=1.0)
    u = api.tenant()  # no capture
    rid = api.chat(t, model="auto").headers["X-Request-Id"]
    rv = client.post(FEEDBACK, json={"request_id": rid, "rating": 1, "comment": "great"},
                     headers=t.headers)  # fmt: skip
    assert rv.status_code == 201, rv.get_json()
    fb = rv.get_json()
    assert fb["id"].startswith("fb_") and fb["request_id"] == rid and fb["key_id"] == t.key_id
    assert fb["rating"] == 1 and fb["comment"] == "great" and fb["task"] == "general_qa"
    assert fb["messages"] == [{"role": "user", "content": "hi there"}]
    assert fb["routing"]["model"] == fb["model"] == "local/tiny-a"
    # not captured: no messages, the routing decision from the usage row
    uid = api.chat(u, model="local/tiny-b").headers["X-Request-Id"]
    rv = client.post(FEEDBACK, json={"request_id": uid, "rating": -1}, headers=u.headers)
    assert rv.status_code == 201
    assert rv.get_json()["messages"] is None and rv.get_json()["routing"] is None
    # another account's request, or none at all: 404 (never a hint that it exists)
    for who, req in ((u, rid), (t, "req_doesnotexist")):
        rv = client.post(FEEDBACK, json={"request_id": req, "rating": 1}, headers=who.headers)
        assert rv.status_code == 404 and rv.get_json()["error"]["code"] == "request_not_found"
    for bad in (0, 2, "1", True, 1.0, None):
        rv = client.post(FEEDBACK, json={"request_id": rid, "rating": bad}, headers=t.headers)
        assert rv.status_code == 400, bad
        assert rv.get_json()["error"]["param"] == "rating"
    rv = client.post(FEEDBACK, json={"request_id": rid}, headers=t.headers)
    assert rv.status_code == 400
    assert client.post(FEEDBACK, json={"request_id": rid, "rating": 1}).status_code == 401
    assert len(rows(app, feedback)) == 2


def _eval_account(api, credits=10_000_000):
    email = "evals@operator.example"
    with api.app.app_context(), db.write() as conn:
        if accounts.find(conn, email) is None:
            accounts.create_account(conn, email, None, credits)
    return email


def _vote_and_verdict(api, t, pair_id):
    rv = api.client.post(f"{TRAFFIC}/pairs/{pair_id}/votes", json={"winner": "a"},
                         headers=t.headers)  # fmt: skip
    assert rv.status_code == 201
    rv = api.client.post(
        f"{TRAFFIC}/pairs/{pair_id}/verdicts",
        json={"judge": "Qwen/Qwen3-14B", "winner": "tie", "detail": {"orders": ["ab", "ba"]}},
        headers=t.headers,
    )
    assert rv.status_code == 201


def test_comparison_after_the_answer_billed_to_the_eval_account(api, app, engines):
    email = _eval_account(api)
    app.config["EVAL_ACCOUNT"] = email
    t = api.tenant(capture_rate=1.0, compare_rate=1.0, pool=POOL)
    before = api.balance(t)["balance_micros"]
    with app.app_context(), db.read() as conn:
        eval_id = accounts.require(conn, email)["id"]
        eval_before = ledger.balance(conn, eval_id)["balance_micros"]
    rv = api.chat(t, model="auto")
    assert rv.status_code == 200
    body = rv.get_json()
    assert body["model"] == body["routing"]["model"] == "local/tiny-a"
    rid = rv.headers["X-Request-Id"]
    assert compare.get(app).drain()
    assert [c["model"] for c in engines.calls] == ["local/tiny-a", "tiny-b"]  # user's first
    [pair] = rows(app, pairs)
    assert pair["request_id"] == rid and pair["account_id"] == t.account_id
    served, other = ("a", "b") if pair["served"] == "a" else ("b", "a")
    assert pair[f"model_{served}"] == body["model"] == "local/tiny-a"
    assert pair[f"model_{other}"] == "local/tiny-b"
    assert pair[f"answer_{served}"] == answer_of(rv)
    # the user paid for their own request only; the comparison went to the eval account
    [mine] = rows(app, usage_logs, account_id=t.account_id)
    assert before - api.balance(t)["balance_micros"] == mine["cost_micros"]
    [cmp_row] = rows(app, usage_logs, account_id=eval_id)
    assert cmp_row["id"].startswith("cmp_") and cmp_row["served_model"] == "local/tiny-b"
    assert cmp_row["cost_micros"] > 0 and cmp_row["key_id"] is None
    assert pair["compare_cost_micros"] == cmp_row["cost_micros"]
    with app.app_context(), db.read() as conn:
        assert (
            eval_before - ledger.balance(conn, eval_id)["balance_micros"] == cmp_row["cost_micros"]
        )
        assert ledger.balance(conn, eval_id)["reserved_micros"] == 0


def test_comparisons_only_for_auto_with_an_eval_account_and_a_random_order(api, app, engines):
    t = api.tenant(capture_rate=1.0, compare_rate=1.0, pool=POOL)
    api.chat(t, model="auto")  # no EVAL_ACCOUNT: no comparison
    app.config["EVAL_ACCOUNT"] = _eval_account(api)
    api.chat(t, model="local/tiny-a")  # not routed: no comparison
    assert compare.get(app).drain()
    assert rows(app, pairs) == []
    no = api.tenant(capture_rate=1.0, compare_rate=0.0, pool=POOL)
    api.chat(no, model="auto")
    assert compare.get(app).drain() and rows(app, pairs) == []
    for _ in range(20):
        assert api.chat(t, model="auto").status_code == 200
    assert compare.get(app).drain()
    made = rows(app, pairs)
    assert len(made) == 20
    assert {p["served"] for p in made} == {"a", "b"}  # (one side only: 2 * 0.5**20)


def test_comparison_not_made_when_the_eval_account_cannot_pay(api, app, engines):
    app.config["EVAL_ACCOUNT"] = _eval_account(api, credits=1)
    t = api.tenant(capture_rate=1.0, compare_rate=1.0, pool=POOL)
    assert api.chat(t, model="auto").status_code == 200
    assert compare.get(app).drain()
    assert rows(app, pairs) == [] and len(engines.calls) == 1


def test_pairs_votes_verdicts_and_export(api, app, client):
    app.config["EVAL_ACCOUNT"] = _eval_account(api)
    t = api.tenant(capture_rate=1.0, compare_rate=1.0, pool=POOL)
    stranger = api.tenant()
    rids = [api.chat(t, model="auto").headers["X-Request-Id"] for _ in range(3)]
    assert compare.get(app).drain()
    rv = client.get(f"{TRAFFIC}/pairs?limit=2", headers=t.headers)
    assert rv.status_code == 200
    page = rv.get_json()
    assert [p["request_id"] for p in page["data"]] == rids[:2]  # oldest first
    p0 = page["data"][0]
    assert p0["messages"] == [{"role": "user", "content": "hi there"}]
    assert p0["task"] == "general_qa" and p0["routing"]["model"] == "local/tiny-a"
    assert {p0["model_a"], p0["model_b"]} == set(POOL) and p0["votes"] == p0["verdicts"] == []
    rest = client.get(f"{TRAFFIC}/pairs?limit=2&cursor={page['next_cursor']}", headers=t.headers)
    assert [p["request_id"] for p in rest.get_json()["data"]] == rids[2:]
    assert rest.get_json()["next_cursor"] is None
    assert client.get(f"{TRAFFIC}/pairs", headers=stranger.headers).get_json()["data"] == []

    judge = "Qwen/Qwen3-14B"
    url = f"{TRAFFIC}/pairs/{p0['id']}/verdicts"
    rv = client.post(url, json={"judge": judge, "winner": "b", "detail": {"g1": "B", "g2": "B"}},
                     headers=t.headers)  # fmt: skip
    assert rv.status_code == 201 and rv.get_json()["winner"] == "b"
    for bad in ({"judge": judge, "winner": "c"}, {"winner": "a"}, {"judge": "", "winner": "a"}):
        assert client.post(url, json=bad, headers=t.headers).status_code == 400
    assert client.post(url, json={"judge": judge, "winner": "a"},
                       headers=stranger.headers).status_code == 404  # fmt: skip
    vote = f"{TRAFFIC}/pairs/{p0['id']}/votes"
    assert client.post(vote, json={"winner": "tie"}, headers=t.headers).status_code == 201
    assert client.post(vote, json={"winner": "x"}, headers=t.headers).status_code == 400
    assert client.post(vote, json={"winner": "a"}, headers=stranger.headers).status_code == 404

    unjudged = client.get(f"{TRAFFIC}/pairs?unjudged_by={judge}", headers=t.headers).get_json()
    assert [p["request_id"] for p in unjudged["data"]] == rids[1:]
    other_judge = client.get(f"{TRAFFIC}/pairs?unjudged_by=x", headers=t.headers).get_json()
    assert len(other_judge["data"]) == 3
    unvoted = client.get(f"{TRAFFIC}/pairs?unvoted=true", headers=t.headers).get_json()
    assert [p["request_id"] for p in unvoted["data"]] == rids[1:]
    got = client.get(f"{TRAFFIC}/pairs", headers=t.headers).get_json()["data"][0]
    assert [v["winner"] for v in got["votes"]] == ["tie"] and got["votes"][0]["source"] == "human"
    assert got["verdicts"][0]["judge"] == judge
    assert got["verdicts"][0]["detail"] == {"g1": "B", "g2": "B"}
    assert client.get(f"{TRAFFIC}/pairs?limit=0", headers=t.headers).status_code == 400
    assert client.get(f"{TRAFFIC}/pairs?cursor=abc", headers=t.headers).status_code == 400

    client.post(FEEDBACK, json={"request_id": rids[2], "rating": -1}, headers=t.headers)
    rv = client.get(f"{TRAFFIC}/export", headers=t.headers)
    assert rv.status_code == 200 and rv.mimetype == "application/x-ndjson"
    lines = [json.loads(x) for x in rv.get_data(as_text=True).splitlines()]
    assert [x["kind"] for x in lines] == ["pair", "pair", "pair", "feedback"]
    assert [x["created_at"] for x in lines] == sorted(x["created_at"] for x in lines)
    assert lines[0]["votes"][0]["winner"] == "tie" and lines[0]["verdicts"][0]["winner"] == "b"
    assert lines[3]["request_id"] == rids[2] and lines[3]["messages"] is not None
    assert all(x["created_at"].endswith("Z") for x in lines)
    since = lines[2]["created_at"]
    rv = client.get(f"{TRAFFIC}/export", query_string={"since": since}, headers=t.headers)
    assert [json.loads(x)["kind"] for x in rv.get_data(as_text=True).splitlines()] == [
        "pair",
        "feedback",
    ]
    assert client.get(f"{TRAFFIC}/export", headers=stranger.headers).get_data() == b""
    for bad in ("yesterday", "2026-11-29", "2026-11-29T10:00:00"):  # a date, a naive time: 400
        assert client.get(f"{TRAFFIC}/export?since={bad}", headers=t.headers).status_code == 400
    assert client.get(f"{TRAFFIC}/export").status_code == 401


def test_export_pages_through_many_records(api, app, client, monkeypatch):
    monkeypatch.setattr(traffic, "PAGE", 3)
    t = api.tenant(capture_rate=1.0)
    rids = [api.chat(t).headers["X-Request-Id"] for _ in range(7)]
    for rid in rids:
        client.post(FEEDBACK, json={"request_id": rid, "rating": 1}, headers=t.headers)
    lines = client.get(f"{TRAFFIC}/export", headers=t.headers).get_data(as_text=True).splitlines()
    assert [json.loads(x)["request_id"] for x in lines] == rids


def test_openapi_documents_the_traffic_endpoints(client):
    spec = client.get("/openapi.json").get_json()
    assert "201" in spec["paths"]["/api/v1/inference/feedback"]["post"]["responses"]
    assert "404" in spec["paths"]["/api/v1/inference/feedback"]["post"]["responses"]
    for path in ("/api/v1/traffic/pairs", "/api/v1/traffic/export"):
        assert "get" in spec["paths"][path]
    assert "post" in spec["paths"]["/api/v1/traffic/pairs/{pair_id}/verdicts"]
    assert "capture_rate" in spec["components"]["schemas"]["KeyCreate"]["properties"]


def test_dashboard_compare_page_votes_and_request_feedback_with_a_session(api, app):
    app.config["EVAL_ACCOUNT"] = _eval_account(api)
    t = api.tenant(password=True, capture_rate=1.0, compare_rate=1.0, pool=POOL)
    rid = api.chat(t, model="auto").headers["X-Request-Id"]
    assert compare.get(app).drain()
    browser = app.test_client()
    rv = browser.post("/api/v1/auth/login", json={"email": t.email, "password": "pw-" + t.email})
    csrf = {"X-CSRF-Token": rv.get_json()["csrf_token"]}
    page = browser.get("/dashboard/compare").get_data(as_text=True)
    assert 'data-vote="a"' in page and 'data-vote="tie"' in page and 'data-vote="b"' in page
    assert "compare.js" in page and 'href="/dashboard/compare"' in page
    assert browser.get("/dashboard/static/compare.js").status_code == 200
    keys_page = browser.get("/dashboard/keys").get_data(as_text=True)
    assert 'id="key-capture"' in keys_page and 'id="edit-capture"' in keys_page
    # what the pages' scripts send, with the session cookie and its CSRF token
    [pair] = browser.get(f"{TRAFFIC}/pairs?unvoted=true").get_json()["data"]
    url = f"{TRAFFIC}/pairs/{pair['id']}/votes"
    assert browser.post(url, json={"winner": "b"}).status_code == 403  # no CSRF token
    assert browser.post(url, json={"winner": "b"}, headers=csrf).status_code == 201
    assert browser.get(f"{TRAFFIC}/pairs?unvoted=true").get_json()["data"] == []
    rv = browser.post(FEEDBACK, json={"request_id": rid, "rating": 1}, headers=csrf)
    assert rv.status_code == 201 and rv.get_json()["key_id"] == t.key_id
    usage = browser.get("/api/v1/inference/usage").get_json()["data"]
    assert usage[0]["id"] == rid  # the request view's row names the request by its X-Request-Id


def test_the_answer_never_waits_for_its_comparison(api, app, engines, monkeypatch):
    app.config["EVAL_ACCOUNT"] = _eval_account(api)
    t = api.tenant(capture_rate=1.0, compare_rate=1.0, pool=POOL)
    gate = threading.Event()
    complete = engines.complete

    def slow_other_model(model_id, body):  # the comparison's engine call hangs until released
        if model_id == "local/tiny-b":
            assert gate.wait(30)
        return complete(model_id, body)

    monkeypatch.setattr(engines, "complete", slow_other_model)
    rv = api.chat(t, model="auto")
    assert rv.status_code == 200 and answer_of(rv) == engines.reply
    frames = data_frames(api.chat(t, model="auto", stream=True))
    assert frames[-1] == "[DONE]"
    assert rows(app, pairs) == []  # both answers came back while the comparisons were stuck
    gate.set()
    assert compare.get(app).drain()
    assert len(rows(app, pairs)) == 2
