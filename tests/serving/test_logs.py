"""Structured logs (serving/logs.py): under real gunicorn with `INFERBASE_LOG_FORMAT=json` every
line of the server's output is a JSON object, each chat request has one line carrying its request
id, key id, model, tokens, cost, latency, status, route, TTFT and routing task, and neither the
prompt nor the raw key appears anywhere in the output (at DEBUG, the most the gateway logs)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest

from serving import logs
from serving.testing import server as srv

URL = "/api/v1/inference/chat/completions"
PROMPT = "zebra-quartz secret prompt 4711"


def test_request_lines_are_json_with_their_fields_and_no_prompt_or_key(tmp_path: Path):
    home = tmp_path / "gw"
    home.mkdir()
    db_url = srv.prepare(home, {"logs@example.com": 50_000_000})
    key, key_id = srv.api_key(home, db_url, "logs@example.com")
    env = {"INFERBASE_LOG_FORMAT": "json", "INFERBASE_LOG_LEVEL": "DEBUG"}
    server = srv.start(home, db_url, workers=1, threads=8, extra_env=env)
    headers = {"Authorization": f"Bearer {key}", "X-Request-Id": "client-7"}
    messages = [{"role": "user", "content": PROMPT}]
    try:
        rv = httpx.post(
            server.url + URL,
            json={"model": "auto", "messages": messages, "max_tokens": 4},
            headers=headers,
        )
        assert rv.status_code == 200
        plain = (rv.headers["X-Request-Id"], rv.json()["usage"])
        with httpx.stream(
            "POST",
            server.url + URL,
            json={"model": "local/tiny-a", "messages": messages, "stream": True},
            headers=headers,
        ) as rv:
            rv.read()
        streamed = rv.headers["X-Request-Id"]
        rv = httpx.post(server.url + URL, json={"model": "auto", "messages": messages})
        assert rv.status_code == 401
        refused = rv.headers["X-Request-Id"]
    finally:
        server.stop()
    text = server.log.read_text()
    assert PROMPT not in text and "zebra-quartz" not in text
    assert key not in text and key[:16] not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line
    by_id = {r["request_id"]: r for r in lines if "request_id" in r}
    assert sum(1 for r in lines if r.get("request_id") == plain[0]) == 1  # one line each

    line = by_id[plain[0]]
    assert line["message"] == f"POST {URL} 200" and line["level"] == "INFO"
    assert line["time"].endswith("+00:00")
    assert (line["route"], line["status"], line["key_id"]) == (URL, 200, key_id)
    assert line["client_request_id"] == "client-7"
    assert line["model"] == "local/tiny-a" and line["routing_task"] == "general_qa"
    assert line["prompt_tokens"] == plain[1]["prompt_tokens"] > 0
    assert line["completion_tokens"] == plain[1]["completion_tokens"] == 4
    assert line["cost_micros"] > 0 and line["latency_ms"] > 0 and line["outcome"] == "success"

    line = by_id[streamed]
    assert line["stream"] is True and line["status"] == 200 and line["outcome"] == "success"
    assert 0 < line["ttft_ms"] <= line["latency_ms"] and line["completion_tokens"] > 0
    assert line["routing_task"] is None  # a named model, not routed

    line = by_id[refused]
    assert line["status"] == 401 and line["key_id"] is None and "model" not in line
    # gunicorn's own lines are JSON too
    assert any(r["logger"] == "gunicorn.error" for r in lines)


@pytest.mark.parametrize(
    ("setting", "tty", "want"),
    [
        ("json", True, "json"),
        ("text", False, "text"),
        ("auto", True, "text"),
        ("auto", False, "json"),
    ],
)
def test_log_format_setting(monkeypatch, setting, tty, want):
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setenv(logs.FORMAT_ENV, setting)
    assert logs.log_format(Stream()) == want


def test_unknown_log_format_is_refused(monkeypatch):
    monkeypatch.setenv(logs.FORMAT_ENV, "xml")
    with pytest.raises(ValueError, match="json, text or auto"):
        logs.log_format()
