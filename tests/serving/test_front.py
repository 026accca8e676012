"""Every request comes in through serving.front.Front: the chat endpoint answered lean (without
Flask's dispatch) and every other route through Flask, with one request id, one log line and one
error shape for all."""

from __future__ import annotations

from tests.serving.test_chat import data_frames, txn_kinds, usage_rows

URL = "/api/v1/inference/chat/completions"


def test_chat_answers_what_a_client_expects(api, app):
    t = api.tenant(credits_micros=2_000_000)
    body = {"model": "local/tiny-a", "messages": [{"role": "user", "content": "hi"}]}
    rv = api.client.post(
        URL, json={**body, "max_tokens": 8}, headers={**t.headers, "X-Request-Id": "abc-0"}
    )
    assert rv.status_code == 200 and rv.headers["Content-Type"] == "application/json"
    assert rv.headers["X-Inferbase-Model"] == "local/tiny-a"
    assert rv.headers["X-Request-Id"].startswith("req_")  # ours, never the client's
    assert rv.headers["X-Client-Request-Id"] == "abc-0"
    assert int(rv.headers["Content-Length"]) == len(rv.data)
    assert rv.get_json()["choices"][0]["message"]["role"] == "assistant"

    rv = api.chat(t, stream=True, max_tokens=8)
    frames = data_frames(rv)
    assert rv.status_code == 200 and frames[-1] == "[DONE]"
    assert rv.headers["Content-Type"].startswith("text/event-stream")
    assert rv.headers["Cache-Control"] == "no-cache"
    assert rv.headers["X-Accel-Buffering"] == "no"
    assert rv.headers["X-Request-Id"].startswith("req_")

    rows = usage_rows(app, t.account_id)
    assert [(r["status"], r["completion_tokens"]) for r in rows] == [("success", 8)] * 2
    assert rows[0]["prompt_tokens"] > 0
    assert [k for k, _ in txn_kinds(app, t.account_id)].count("deduction") == 2


def test_chat_errors(api, app):
    t = api.tenant(credits_micros=2_000_000)
    body = {"model": "local/tiny-a", "messages": [{"role": "user", "content": "hi"}]}
    rv = api.client.post(URL, data=b"{not json", headers={**t.headers, "X-Request-Id": "abc-1"})
    assert rv.status_code == 400 and rv.get_json()["error"]["code"] == "invalid_json"
    assert rv.headers["X-Request-Id"].startswith("req_")
    assert rv.headers["X-Client-Request-Id"] == "abc-1"
    assert rv.headers["Content-Type"] == "application/json"

    rv = api.client.post(URL, json={"model": "local/tiny-a"}, headers=t.headers)
    assert rv.status_code == 400
    assert rv.get_json()["error"] == {
        "message": "Missing required parameter: 'messages'.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "missing_required_parameter",
    }

    rv = api.client.post(URL, json={**body, "model": "nope"}, headers=t.headers)
    assert rv.status_code == 404 and rv.get_json()["error"]["type"] == "not_found_error"

    rv = api.client.post(URL, json={"model": "local/tiny-a", "messages": []})
    assert rv.status_code == 401 and rv.get_json()["error"]["type"] == "authentication_error"

    rv = api.chat(api.tenant(credits_micros=1))
    assert rv.status_code == 402 and rv.get_json()["error"]["type"] == "insufficient_credits"

    app.config["MAX_CONTENT_LENGTH"] = 100
    rv = api.chat(t, messages=[{"role": "user", "content": "x" * 200}])
    assert rv.status_code == 413 and rv.get_json()["error"]["code"] == "request_too_large"

    assert usage_rows(app, t.account_id) == []  # nothing was billed
    assert "deduction" not in [k for k, _ in txn_kinds(app, t.account_id)]


def test_chat_route_other_methods_get_405_from_the_url_map(api):
    rv = api.client.get(URL)
    assert rv.status_code == 405 and rv.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in rv.headers["Allow"]
    assert rv.headers["X-Request-Id"].startswith("req_")


def test_one_log_line_for_lean_and_flask_routes_without_prompt_or_key(api, caplog):
    t = api.tenant(credits_micros=1)
    with caplog.at_level("INFO", logger="serving"):
        rv = api.chat(t, messages=[{"role": "user", "content": "secret prompt text"}])
        assert rv.status_code == 402
        rv = api.client.delete("/api/v1/inference/keys/nope", headers=t.headers)
        assert rv.status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "serving"]
    assert len(lines) == 2
    for line, (method, path, status) in zip(
        lines,
        [("POST", URL, 402), ("DELETE", "/api/v1/inference/keys/nope", 404)],
        strict=True,
    ):
        assert line.startswith(f"{method} {path} {status} request_id=req_")
        assert f" key={t.key_id} latency_ms=" in line
    assert "secret prompt text" not in caplog.text and t.key not in caplog.text
