"""The chat fast path (serving.api.fast) and the Flask view answer every request the same way:
the same status, body shape, headers, billing and usage rows, for answers, streams and errors."""

from __future__ import annotations

from tests.serving.test_chat import data_frames, txn_kinds, usage_rows

URL = "/api/v1/inference/chat/completions"
HEADERS = ("Content-Type", "X-Inferbase-Model", "Cache-Control", "X-Accel-Buffering")


def run_all(api, app, fast):
    app.config["FAST_CHAT"] = fast
    t = api.tenant(credits_micros=2_000_000)
    out = {}
    rv = api.chat(t, max_tokens=8)
    out["json"] = (rv.status_code, sorted(rv.get_json()), {h: rv.headers.get(h) for h in HEADERS})
    rv = api.chat(t, stream=True, max_tokens=8)
    frames = data_frames(rv)
    out["stream"] = (
        rv.status_code,
        len(frames),
        frames[-1],
        {h: rv.headers.get(h) for h in HEADERS},
    )
    rv = api.client.post(URL, data=b"{not json", headers={**t.headers, "X-Request-Id": "abc-1"})
    out["bad json"] = (rv.status_code, rv.get_json(), rv.headers["X-Request-Id"])
    rv = api.client.post(URL, json={"model": "local/tiny-a"}, headers=t.headers)
    out["missing"] = (rv.status_code, rv.get_json())
    rv = api.client.post(
        URL,
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        headers=t.headers,
    )
    out["unknown model"] = (rv.status_code, rv.get_json())
    rv = api.client.post(URL, json={"model": "local/tiny-a", "messages": []})
    out["no key"] = (rv.status_code, rv.get_json())
    rv = api.chat(api.tenant(credits_micros=1))
    out["too costly"] = (rv.status_code, rv.get_json()["error"]["type"])
    app.config["MAX_CONTENT_LENGTH"] = 100
    rv = api.chat(t, messages=[{"role": "user", "content": "x" * 200}])
    out["too large"] = (rv.status_code, rv.get_json())
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    rows = usage_rows(app, t.account_id)
    out["usage"] = [(r["status"], r["prompt_tokens"], r["completion_tokens"]) for r in rows]
    out["ledger"] = [k for k, _ in txn_kinds(app, t.account_id)]
    out["x-request-id"] = api.chat(t).headers["X-Request-Id"].startswith("req_")
    return out


def test_fast_path_and_flask_view_agree(api, app):
    fast = run_all(api, app, True)
    slow = run_all(api, app, False)
    assert fast == slow


def test_fast_path_answers_what_a_client_expects(api, app):
    out = run_all(api, app, True)
    assert out["json"][0] == 200 and out["json"][2]["Content-Type"] == "application/json"
    assert out["stream"][0] == 200 and out["stream"][2] == "[DONE]"
    assert out["stream"][3]["Content-Type"].startswith("text/event-stream")
    assert out["stream"][3]["Cache-Control"] == "no-cache"
    assert out["bad json"][0] == 400 and out["bad json"][1]["error"]["code"] == "invalid_json"
    assert out["bad json"][2] == "abc-1"
    assert out["missing"][0] == 400 and out["missing"][1]["error"]["param"] == "messages"
    assert out["unknown model"][0] == 404
    assert out["no key"][0] == 401
    assert out["too costly"] == (402, "insufficient_credits")
    assert out["too large"][0] == 413
    assert out["too large"][1]["error"]["code"] == "request_too_large"
    assert out["usage"] == [("success", out["usage"][0][1], 8)] * 2
    assert out["ledger"].count("deduction") == 2


def test_both_paths_log_an_error_line_without_the_prompt_or_key(api, app, caplog):
    t = api.tenant(credits_micros=1)
    lines = {}
    for fast in (True, False):
        app.config["FAST_CHAT"] = fast
        caplog.clear()
        with caplog.at_level("INFO", logger="serving"):
            rv = api.chat(t, messages=[{"role": "user", "content": "secret prompt text"}])
        assert rv.status_code == 402
        (line,) = [r.getMessage() for r in caplog.records if r.name == "serving"]
        lines[fast] = line.rsplit(" latency_ms=", 1)[0]
        assert "secret prompt text" not in caplog.text and t.key not in caplog.text
    rid = lines[True].split("request_id=")[1].split()[0]
    assert lines[True] == lines[False].replace(lines[False].split("request_id=")[1].split()[0], rid)
    assert lines[True].startswith(f"POST {URL} 402 request_id=req_")
    assert lines[True].endswith(f" key={t.key_id}")
