"""A fake of the gateway's traffic endpoints (docs/traffic.md), served in-process to `TrafficAPI`
through `httpx.WSGITransport`: pairs, verdicts, the NDJSON export, the model list and a chat
completions endpoint answered by a scripted judge (a function of the messages)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

KEY = "inf_test_key"
Judge = Callable[[str, list[dict[str, Any]]], str]  # (model, messages) -> answer text


def _error(status: int, message: str, code: str) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    body["error"]["code"] = code
    return Response(json.dumps(body), status=status, mimetype="application/json")


@dataclass
class FakeGateway:
    pairs: list[dict[str, Any]]
    judge: Judge
    feedback: list[dict[str, Any]] = field(default_factory=list)
    models: Sequence[Mapping[str, Any]] = ()
    chat_calls: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.url_map = Map(
            [
                Rule("/api/v1/inference/models", endpoint="models", methods=["GET"]),
                Rule("/api/v1/inference/chat/completions", endpoint="chat", methods=["POST"]),
                Rule("/api/v1/traffic/pairs", endpoint="pairs", methods=["GET"]),
                Rule("/api/v1/traffic/pairs/<pid>/verdicts", endpoint="verdict", methods=["POST"]),
                Rule("/api/v1/traffic/export", endpoint="export", methods=["GET"]),
            ]
        )

    def transport(self) -> httpx.WSGITransport:
        return httpx.WSGITransport(app=self)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        adapter = self.url_map.bind_to_environ(environ)
        endpoint, values = adapter.match()
        if endpoint != "models" and request.headers.get("Authorization") != f"Bearer {KEY}":
            response = _error(401, "invalid API key", "invalid_api_key")
        else:
            response = getattr(self, f"on_{endpoint}")(request, **values)
        return response(environ, start_response)

    # ---------------------------------------------------------------- endpoints

    def on_models(self, request: Request) -> Response:
        data = [{"object": "model", **m} for m in self.models]
        return Response(json.dumps({"object": "list", "data": data}), mimetype="application/json")

    def on_chat(self, request: Request) -> Response:
        body = request.get_json()
        model, messages = body["model"], body["messages"]
        if model not in {m["id"] for m in self.models}:
            return _error(404, f"The model '{model}' does not exist.", "model_not_found")
        self.chat_calls.append((model, messages))
        text = self.judge(model, messages)
        if text == "<too long>":
            return _error(400, "prompt is longer than the context", "context_length_exceeded")
        out = {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        }
        return Response(json.dumps(out), mimetype="application/json")

    def on_pairs(self, request: Request) -> Response:
        limit = int(request.args.get("limit", 50))
        start = int(request.args.get("cursor", 0))
        judge = request.args.get("unjudged_by")
        rows = [
            p
            for p in self.pairs
            if judge is None or all(v["judge"] != judge for v in p["verdicts"])
        ]
        page = rows[start : start + limit]
        nxt = str(start + limit) if start + limit < len(rows) else None
        body = {"object": "list", "data": page, "next_cursor": nxt}
        return Response(json.dumps(body), mimetype="application/json")

    def on_verdict(self, request: Request, pid: str) -> Response:
        body = request.get_json()
        if body.get("winner") not in ("a", "b", "tie"):
            return _error(400, "winner must be a, b or tie", "invalid_winner")
        pair = next((p for p in self.pairs if p["id"] == pid), None)
        if pair is None:
            return _error(404, "no such pair", "not_found")
        verdict = {
            "judge": body["judge"],
            "winner": body["winner"],
            "created_at": "2026-11-29T14:00:00Z",
            "detail": body.get("detail", {}),
        }
        pair["verdicts"].append(verdict)
        return Response(json.dumps(verdict), status=201, mimetype="application/json")

    def on_export(self, request: Request) -> Response:
        since = request.args.get("since")
        records = [{"kind": "pair", **p} for p in self.pairs]
        records += [{"kind": "feedback", **f} for f in self.feedback]
        records = [r for r in records if since is None or r["created_at"] >= since]
        records.sort(key=lambda r: r["created_at"])
        lines = "".join(json.dumps(r) + "\n" for r in records)
        return Response(lines, mimetype="application/x-ndjson")


def pair(i: int, a: str, b: str, answer_a: str, answer_b: str, **extra: Any) -> dict[str, Any]:
    """A pair record of the contract's shape, created i minutes after 13:00."""
    return {
        "id": f"pair_{i:03d}",
        "created_at": f"2026-11-29T13:{i:02d}:00Z",
        "request_id": f"req_{i:03d}",
        "key_id": "key_1",
        "messages": [{"role": "user", "content": f"question {i}"}],
        "task": "chat",
        "routing": {"model": a},
        "model_a": a,
        "answer_a": answer_a,
        "model_b": b,
        "answer_b": answer_b,
        "votes": [],
        "verdicts": [],
        **extra,
    }
