"""A faithful fake of the `Engines` contract and of the router, for unit tests.

FakeEngines behaves like the vLLM implementation: usage on completions, chunks as dicts, the final
usage chunk (`choices: []`) when `stream_options.include_usage` is set, usage on every chunk with
`continuous_usage_stats`, `None` keep-alive ticks, EngineError before or during a stream, and a
generator whose close() is recorded (cancellation).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from inferroute import CandidateScore, RouteDecision
from serving.engines.base import CatalogModel, EngineError, EngineStats, Health

# `fake_fail_after` is a test knob the fake engine reads: a catalog-allowed engine parameter
KNOBS = frozenset({"fake_fail_after"})
MODELS = (
    CatalogModel(
        "local/tiny-a",
        100_000,
        200_000,
        4096,
        ttft_ms=50,
        tpot_ms=5,
        engine_params=KNOBS | {"top_k", "return_token_ids"},
    ),
    CatalogModel(
        "local/tiny-b", 1_000_000, 3_000_000, 8192, served_name="tiny-b", engine_params=KNOBS
    ),
    CatalogModel("Qwen/Qwen3-14B", 150_000, 600_000, 32768),
)


def prompt_tokens(body: dict[str, Any]) -> int:
    words = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    return words + 4 * len(body["messages"])


@dataclass
class FakeEngines:
    models_: tuple[CatalogModel, ...] = MODELS
    health_: dict[str, Health] = field(default_factory=dict)
    reply: str = "hello from the fake engine with several words"
    delay_s: float = 0.0  # between chunks
    keepalive_ticks: int = 0  # None ticks before the first chunk
    fail_before: bool = False
    fail_after: int | None = None  # EngineError after this many content chunks
    fail_with: EngineError | None = None  # raised before anything is generated
    calls: list[dict[str, Any]] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)  # ids of streams closed before their end
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def models(self) -> list[CatalogModel]:
        return list(self.models_)

    def get(self, model_id: str) -> CatalogModel | None:
        return next((m for m in self.models_ if m.id == model_id), None)

    def health(self, model_id: str) -> Health:
        if self.get(model_id) is None:
            return "unavailable"
        return self.health_.get(model_id, "ready")

    def stats(self, model_id: str) -> EngineStats | None:
        return EngineStats(queue_depth=0.0, ttft_ms=10.0, tpot_ms=2.0)

    def _check(self, model_id: str, body: dict[str, Any]) -> list[str]:
        model = self.get(model_id)
        if model is None:
            raise EngineError(f"unknown model {model_id}", status=404, code="model_not_found")
        assert body["model"] == (model.served_name or model.id)
        with self._lock:
            self.calls.append(body)
        if self.health(model_id) == "loading":
            raise EngineError("model is loading", status=502, code="model_loading", retry_after=5)
        if self.fail_before:
            raise EngineError("engine connection refused")
        if self.fail_with is not None:
            raise self.fail_with
        words = self.reply.split()
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or len(words)
        return words[:limit]

    def complete(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        words = self._check(model_id, body)
        n = int(body.get("n") or 1)
        p, c = prompt_tokens(body), len(words)
        ids = body.get("return_token_ids")  # as vLLM: engine-internal fields, null unless asked
        return {
            "id": "chatcmpl-fake" + os.urandom(6).hex(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": f"pid-{os.getpid()}",
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": " ".join(words)},
                    "finish_reason": "stop",
                    "stop_reason": None,
                    "token_ids": list(range(c)) if ids else None,
                }
                for i in range(n)
            ],
            "usage": {"prompt_tokens": p, "completion_tokens": c * n, "total_tokens": p + c * n},
            "prompt_logprobs": None,
            "prompt_token_ids": list(range(p)) if ids else None,
            "kv_transfer_params": None,
        }

    def stream(self, model_id: str, body: dict[str, Any]) -> Iterator[dict[str, Any] | None]:
        words = self._check(model_id, body)  # raises before the generator exists, like httpx would
        return self._gen(body, words)

    def _gen(self, body: dict[str, Any], words: list[str]) -> Iterator[dict[str, Any] | None]:
        opts = body.get("stream_options") or {}
        continuous = bool(opts.get("continuous_usage_stats"))
        cid = "chatcmpl-fake" + os.urandom(6).hex()
        p = prompt_tokens(body)
        done = False

        choices = int(body.get("n") or 1)

        def chunk(delta: dict[str, Any], finish: str | None, n: int, i: int = 0) -> dict[str, Any]:
            # as vLLM: one chunk per choice, its continuous usage counting that choice's tokens
            out: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": i,
                        "delta": delta,
                        "finish_reason": finish,
                        "stop_reason": None,
                        "token_ids": [n] if body.get("return_token_ids") else None,
                    }
                ],
            }
            if n == 0 and body.get("return_token_ids"):
                out["prompt_token_ids"] = list(range(p))
            if continuous:
                out["usage"] = {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}
            return out

        fail_after = body.get("fake_fail_after", self.fail_after)  # a pass-through test knob
        try:
            for _ in range(self.keepalive_ticks):
                yield None
            for c in range(choices):
                yield chunk({"role": "assistant", "content": ""}, None, 0, c)
            for i, word in enumerate(words):
                if fail_after is not None and i >= fail_after:
                    raise EngineError("engine died mid-stream")
                if self.delay_s:
                    time.sleep(self.delay_s)
                for c in range(choices):
                    yield chunk({"content": (" " if i else "") + word}, None, i + 1, c)
            for c in range(choices):
                yield chunk({}, "stop", len(words), c)
            if opts.get("include_usage"):
                n = len(words) * choices
                yield {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [],
                    "usage": {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n},
                }
            done = True
        finally:
            if not done:
                with self._lock:
                    self.closed.append(cid)

    def close(self) -> None:
        pass


def make_engines(app: Any) -> FakeEngines:
    """Engines factory for gunicorn tests: INFERBASE_ENGINES_FACTORY=<this module>:make_engines.

    INFERBASE_FAKE_FAIL_AFTER / INFERBASE_FAKE_DELAY_S tune it; INFERBASE_FAKE_REPLY_REPEAT says
    the reply that many times over (a longer stream)."""
    fail_after = app.config.get("FAKE_FAIL_AFTER")
    repeat = int(app.config.get("FAKE_REPLY_REPEAT", 1))
    return FakeEngines(
        reply=" ".join([FakeEngines.reply] * repeat),
        delay_s=float(app.config.get("FAKE_DELAY_S", 0.0)),
        fail_after=int(fail_after) if fail_after is not None else None,
    )


@dataclass
class FakeRouter:
    """Routes to the cheapest pool model for `cost`, the priciest for `quality`, else the first."""

    version: str = "fake-router@1"
    calls: list[dict[str, Any]] = field(default_factory=list)
    low_confidence: bool = False  # decide as InferRoute does when unsure of the task

    def route(self, messages, pool, *, optimize, task=None, cards=(), live=None):  # type: ignore[no-untyped-def]
        self.calls.append({"pool": list(pool), "optimize": optimize, "task": task, "live": live})
        by_price = sorted(cards, key=lambda c: c.input_price_per_mtok + c.output_price_per_mtok)
        ranked = by_price[::-1] if optimize == "quality" else by_price
        if optimize not in ("cost", "quality"):
            ranked = [next(c for c in cards if c.id == pool[0])] + [
                c for c in cards if c.id != pool[0]
            ]
        scores = {
            c.id: CandidateScore(0.5, 0.001, 100.0, 1.0 - i * 0.1) for i, c in enumerate(ranked)
        }
        return RouteDecision(
            model=ranked[0].id,
            task=task or "general_qa",
            confidence=0.9,
            complexity="simple",
            complexity_score=0.2,
            candidates=scores,
            optimize=optimize,
            router_version=self.version,
            routing_time_ms=0.5,
            task_overridden=task is not None,
            extra={"low_confidence": True} if self.low_confidence else {},
        )
