"""The only module of `serving` that imports `inferroute`: builds the router and its inputs.

`build_router(app)` returns the object `model: "auto"` requests are routed with (anything with
``route(messages, pool, optimize=, task=, cards=, live=) -> RouteDecision``), or None when smart
routing is not available. This minimal version returns None; the MLflow champion loader replaces it.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from inferroute import LiveStats, ModelCard
from serving.engines.base import CatalogModel, Engines


def build_router(app: Flask) -> Any | None:
    return None


def to_card(model: CatalogModel, micros_per_credit: int = 1_000_000) -> ModelCard:
    routing = dict(model.routing or {})
    return ModelCard(
        id=model.id,
        input_price_per_mtok=model.input_price_micros_per_mtok / micros_per_credit,
        output_price_per_mtok=model.output_price_micros_per_mtok / micros_per_credit,
        context_length=model.context_length,
        ttft_ms=model.ttft_ms,
        tpot_ms=model.tpot_ms,
        quality_proxy=routing.get("quality_proxy"),
        quality_prior=routing.get("quality_prior"),
    )


def live_stats(engines: Engines, model_id: str) -> LiveStats:
    stats = engines.stats(model_id)
    available = engines.health(model_id) == "ready"
    if stats is None:
        return LiveStats(available=available)
    return LiveStats(
        queue_depth=stats.queue_depth,
        ttft_ms=stats.ttft_ms,
        tpot_ms=stats.tpot_ms,
        available=available,
    )
