"""evals.notebook.gateway: the CLI-driven local gateway (real gunicorn and database) and stream summaries."""

from __future__ import annotations

import httpx
import pytest
from openai.types.chat import ChatCompletionChunk

from evals.notebook.gateway import GatewayError, LocalGateway, read_stream

PORT = 18590


def test_gateway_lifecycle_without_engines(tmp_path):
    gw = LocalGateway(tmp_path / "home", PORT, engine_port_base=18592)
    try:
        gw.start(workers=1, threads=4)  # `inferbase serve` migrates the database first
        with pytest.raises(GatewayError, match="ghost@example.com"):
            gw.create_key("ghost@example.com", "k")
        assert "notebook@example.com" in gw.create_account("notebook@example.com", "2.5")
        key = gw.create_key("notebook@example.com", "k", pool=["local/tiny-a", "local/tiny-b"])
        assert key.startswith("inf_")
        credits = gw.get("/credits", key)
        assert credits["balance_micros"] == 2_500_000 and credits["balance"].startswith("2.5")
        assert gw.get("/usage", key)["data"] == []
        models = httpx.get(gw.base_url + "/models", timeout=10).json()
        assert {"local/tiny-a", "local/tiny-b"} <= {m["id"] for m in models["data"]}
        assert (gw.home / "gateway.pid").exists()
    finally:
        gw.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(gw.url + "/healthz", timeout=2)
    gw.stop()  # idempotent


def test_cleanup_stops_a_server_left_behind(tmp_path):
    gw = LocalGateway(tmp_path / "home", PORT + 1)
    gw.start(workers=1, threads=4)
    proc = gw._server
    LocalGateway.cleanup(gw.home)  # what notebooks/conftest.py does when a kernel was killed
    assert proc.wait(timeout=30) is not None
    assert not (gw.home / "gateway.pid").exists()


def _chunk(**kw):
    base = {"id": "chatcmpl-1", "created": 1, "model": "m", "object": "chat.completion.chunk"}
    return ChatCompletionChunk.construct(**{**base, **kw})


def test_read_stream():
    routing = ChatCompletionChunk.construct(
        id="r", object="routing", created=1, model="local/tiny-a", choices=[], task="math"
    )
    delta = {"index": 0, "delta": {"content": "hi"}, "finish_reason": None}
    chunks = [
        routing,
        _chunk(model="local/tiny-a", choices=[ChatCompletionChunk.model_validate(
            {"id": "x", "created": 1, "model": "m", "object": "chat.completion.chunk",
             "choices": [delta]}).choices[0]]),
        _chunk(model="local/tiny-a", choices=[], usage=None),
    ]  # fmt: skip
    usage_chunk = ChatCompletionChunk.model_validate(
        {"id": "u", "created": 1, "model": "local/tiny-a", "object": "chat.completion.chunk",
         "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    )  # fmt: skip
    s = read_stream([*chunks, usage_chunk])
    assert s.routing["object"] == "routing" and s.routing["task"] == "math"
    assert s.text == "hi" and s.model == "local/tiny-a" and s.chunks == 4
    assert s.usage["completion_tokens"] == 2
