"""The gateway's traffic endpoints seen from the harness, over HTTP (evals never imports serving).

    api = TrafficAPI("http://127.0.0.1:8000", "inf_...")
    api.models()                       # GET  /api/v1/inference/models
    api.pairs(unjudged_by="judge-id")  # GET  /api/v1/traffic/pairs (every page, oldest first)
    api.post_verdict(pair_id, "judge-id", "a", {...})   # POST /api/v1/traffic/pairs/{id}/verdicts
    api.chat("judge-id", messages)     # POST /api/v1/inference/chat/completions -> the answer text
    api.export()                       # GET  /api/v1/traffic/export (NDJSON records)

The shapes are the contract in docs/traffic.md. Errors come back as `TrafficAPIError` carrying the
status and the gateway's OpenAI-shaped error message. `transport` lets tests serve a fake gateway
in-process (`httpx.WSGITransport`, `httpx.MockTransport`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

logger = logging.getLogger(__name__)

INFERENCE = "/api/v1/inference"
TRAFFIC = "/api/v1/traffic"


class TrafficAPIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class TrafficAPI:
    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TrafficAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, r: httpx.Response) -> httpx.Response:
        if r.is_success:
            return r
        try:
            message = str(r.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = r.text[:500]
        raise TrafficAPIError(r.status_code, message)

    def models(self) -> list[dict[str, Any]]:
        """The catalog as `GET /models` lists it (id, pricing, and routing hints when present)."""
        data: list[dict[str, Any]] = self._check(self._client.get(INFERENCE + "/models")).json()[
            "data"
        ]
        return data

    def pairs(self, unjudged_by: str | None = None, page: int = 100) -> list[dict[str, Any]]:
        """Every stored pair (oldest first), optionally only those `unjudged_by` has no verdict on.

        All pages are read before anything is judged, so recording verdicts (which moves a pair
        out of the `unjudged_by` view) cannot make a page skip pairs."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page}
            if unjudged_by:
                params["unjudged_by"] = unjudged_by
            if cursor:
                params["cursor"] = cursor
            body = self._check(self._client.get(TRAFFIC + "/pairs", params=params)).json()
            out.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor or not body["data"]:
                return out

    def post_verdict(
        self, pair_id: str, judge: str, winner: str, detail: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"judge": judge, "winner": winner}
        if detail is not None:
            body["detail"] = dict(detail)
        r = self._client.post(f"{TRAFFIC}/pairs/{pair_id}/verdicts", json=body)
        out: dict[str, Any] = self._check(r).json()
        return out

    def chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.0,
    ) -> str:
        """One non-streamed chat completion through the gateway; returns the answer's text."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [dict(m) for m in messages],
            "temperature": temperature,
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        r = self._check(self._client.post(INFERENCE + "/chat/completions", json=body))
        choice = r.json()["choices"][0]
        return str(choice["message"].get("content") or "")

    def export_lines(self, since: str | None = None) -> Iterator[dict[str, Any]]:
        """`GET /traffic/export` read as it streams: one record per NDJSON line."""
        params = {"since": since} if since else None
        with self._client.stream("GET", TRAFFIC + "/export", params=params) as r:
            if not r.is_success:
                r.read()
                self._check(r)
            for line in r.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def export(self, since: str | None = None) -> list[dict[str, Any]]:
        return list(self.export_lines(since))
