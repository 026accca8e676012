"""Chat completion steps before the engine call: resolve the model (or route `auto`), estimate
the worst-case cost to reserve, and describe the routing decision (headers, body, usage row)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from serving import ledger
from serving.auth import Principal
from serving.engines.base import CatalogModel, Engines
from serving.errors import ApiError
from serving.protocol import ChatCompletionRequest
from serving.router_client import RouteDecision, RouterClient, live_stats, to_card

logger = logging.getLogger(__name__)

PER_MESSAGE_OVERHEAD = 16  # chat-template tokens per message, generous
PER_REQUEST_OVERHEAD = 64


@dataclass(frozen=True, slots=True)
class Resolved:
    model: CatalogModel
    decision: RouteDecision | None = None  # when routed
    fallback_from: str | None = None

    def routing(self) -> dict[str, Any] | None:
        d = self.decision
        if d is None:
            return None
        return {
            "task": d.task,
            "complexity": d.complexity,
            "confidence": round(float(d.confidence), 4),
            "model": self.model.id,
            "optimize": d.optimize,
            "routing_time_ms": round(float(d.routing_time_ms), 3),
            "router_version": d.router_version,
            "trained": d.trained,
            "fallback_from": self.fallback_from,
            "complexity_score": round(float(d.complexity_score), 4),
            "low_confidence": bool(d.extra.get("low_confidence", False)),
            "candidates": {
                m: {
                    "quality": round(float(c.quality), 4),
                    "cost": float(c.cost),
                    "latency_ms": round(float(c.latency_ms), 1),
                    "score": round(float(c.score), 4),
                }
                for m, c in d.candidates.items()
            },
        }

    def headers(self) -> dict[str, str]:
        info = self.routing()
        out = {"X-Inferbase-Model": self.model.id}
        if info is None:
            return out
        out.update(
            {
                "X-Inferbase-Task": str(info["task"]),
                "X-Inferbase-Complexity": str(info["complexity"]),
                "X-Inferbase-Confidence": str(info["confidence"]),
                "X-Inferbase-Optimize": str(info["optimize"]),
                "X-Inferbase-Routing-Time-Ms": str(info["routing_time_ms"]),
                "X-Inferbase-Router-Version": str(info["router_version"]),
            }
        )
        if self.fallback_from:
            out["X-Inferbase-Fallback-From"] = self.fallback_from
        return out


def resolve(
    req: ChatCompletionRequest,
    messages: list[dict[str, Any]],
    principal: Principal,
    engines: Engines,
    router: RouterClient | None,  # or a fake with the same route() in tests
    micros_per_credit: int,
) -> Resolved:
    overrides = req.routing
    pool = list(overrides.model_pool or []) if overrides and overrides.model_pool else []
    # checked whichever model is asked for: an unknown id is the client's mistake either way
    unknown = [m for m in pool if engines.get(m) is None]
    if unknown:
        raise ApiError(
            400, f"Unknown model id(s): {', '.join(unknown)}.", param="routing.model_pool"
        )
    if req.model != "auto":
        model = engines.get(req.model)
        if model is None:
            raise ApiError(
                404,
                f"The model '{req.model}' does not exist. GET /models lists the available ones.",
                param="model",
                code="model_not_found",
            )
        return Resolved(model)
    if router is None:
        raise ApiError(
            404,
            "Smart routing (model 'auto') is not enabled on this server: no router is loaded.",
            param="model",
            code="model_not_found",
        )
    known = {m.id: m for m in engines.models()}
    key = principal.key
    if not pool:
        pool = [m for m in (key.model_pool if key else ()) if m in known] or list(known)
    if not pool:
        raise ApiError(404, "No models are available to route to.", param="model")
    optimize = (overrides.optimize if overrides else None) or (
        key.optimize_mode if key else "balanced"
    )
    task = overrides.task if overrides else None
    cards = [to_card(known[m], micros_per_credit) for m in pool]
    live = {m: live_stats(engines, m) for m in pool}
    try:
        decision = router.route(
            messages, pool, optimize=optimize, task=task, cards=cards, live=live
        )
    except ValueError as e:
        raise ApiError(400, f"Routing failed: {e}", param="routing") from e
    return _with_fallback(decision, known, engines)


def _with_fallback(
    decision: RouteDecision, known: dict[str, CatalogModel], engines: Engines
) -> Resolved:
    chosen = decision.model
    if engines.health(chosen) == "ready":
        return Resolved(known[chosen], decision)
    ranked = sorted(decision.candidates.items(), key=lambda kv: kv[1].score, reverse=True)
    for model_id, _score in ranked:
        if model_id != chosen and model_id in known and engines.health(model_id) == "ready":
            logger.info("routing fallback %s -> %s (not ready)", chosen, model_id)
            return Resolved(known[model_id], decision, fallback_from=chosen)
    return Resolved(known[chosen], decision)  # nothing ready: the engine answers (502/Retry-After)


def prompt_upper_bound(body: dict[str, Any]) -> int:
    """An upper bound on prompt tokens: UTF-8 bytes (a byte-level BPE token is >= 1 byte) plus
    chat-template overhead."""
    total = PER_REQUEST_OVERHEAD
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            total += len(content.encode()) + PER_MESSAGE_OVERHEAD
        else:
            total += len(json.dumps(msg, ensure_ascii=False).encode()) + PER_MESSAGE_OVERHEAD
    for extra in ("tools", "response_format"):
        if body.get(extra):
            total += len(json.dumps(body[extra], ensure_ascii=False).encode())
    return total


def worst_case_tokens(
    req: ChatCompletionRequest, body: dict[str, Any], model: CatalogModel, output_cap: int
) -> tuple[int, int]:
    """(prompt, output) tokens a request can use at most: what it reserves, in credits and TPM."""
    ctx = model.context_length
    prompt = min(prompt_upper_bound(body), ctx)
    out = req.max_completion_tokens or req.max_tokens or output_cap
    return prompt, min(out, ctx) * req.n


def worst_case_micros(model: CatalogModel, worst: tuple[int, int]) -> int:
    return ledger.cost_micros(
        worst[0], worst[1], model.input_price_micros_per_mtok, model.output_price_micros_per_mtok
    )


def upstream_body(body: dict[str, Any], model: CatalogModel, stream: bool) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k != "routing"}
    out["model"] = model.served_name or model.id
    if stream:
        # Usage is always requested for billing; continuous stats tell what was delivered so far.
        out["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    else:
        out.pop("stream_options", None)
    return out
