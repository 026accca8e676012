"""Plain data types shared by every router and by the callers of the library.

Frozen, slotted dataclasses: no pydantic, no I/O. Serving converts its catalog into `ModelCard`s
and its engine monitor figures into `LiveStats`; the router returns a `RouteDecision`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Complexity = Literal["simple", "medium", "complex"]

# The optimize modes: this is their one definition. Serving's wire schema, CLI and dashboard, the
# router's policy (`policy.policy_params`) and the evals all read it. A new mode: its name in the
# Literal (the static type) and a line in OPTIMIZE, plus its four `policy_<mode>_*` RouterConfig
# fields; tests/inferroute/test_config_registry.py checks that the three agree.
OptimizeMode = Literal["balanced", "quality", "cost", "latency"]
POLICY_PARAMS = ("w_quality", "w_cost", "w_latency", "epsilon")  # RouterConfig.policy_<mode>_<p>


@dataclass(frozen=True, slots=True)
class OptimizeModeInfo:
    name: OptimizeMode
    label: str  # what a person picks in a form
    description: str  # what the policy does (its parameters are tuned, so no numbers here)

    @property
    def policy_params(self) -> tuple[str, ...]:
        """Its policy's RouterConfig fields: weights of quality, cost, latency; quality slack."""
        return tuple(f"policy_{self.name}_{p}" for p in POLICY_PARAMS)


OPTIMIZE: Mapping[str, OptimizeModeInfo] = {
    m.name: m
    for m in (
        OptimizeModeInfo(
            "balanced", "Balanced", "the best weighted trade-off of quality, cost and latency"
        ),
        OptimizeModeInfo(
            "quality", "Best quality", "the best predicted quality (the cheaper one of near ties)"
        ),
        OptimizeModeInfo("cost", "Cheapest", "the cheapest model close to the best quality"),
        OptimizeModeInfo("latency", "Fastest", "the fastest model close to the best quality"),
    )
}
OPTIMIZE_MODES: tuple[str, ...] = tuple(OPTIMIZE)


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What the router needs to know about one model it may route to.

    Prices are USD per million tokens (floats are fine inside the router; the serving ledger bills
    in integer micro-credits from its own catalog). `quality_proxy` names a model the router was
    trained on whose learned quality profile stands in for this one; `quality_prior` (0-1) is used
    when there is no proxy.
    """

    id: str
    input_price_per_mtok: float
    output_price_per_mtok: float
    context_length: int = 8192
    ttft_ms: float = 200.0
    tpot_ms: float = 20.0
    quality_proxy: str | None = None
    quality_prior: float | None = None


@dataclass(frozen=True, slots=True)
class LiveStats:
    """Live engine figures for one model, when the serving side has them."""

    queue_depth: float = 0.0  # requests running + waiting, summed over ready replicas
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    available: bool = True


@dataclass(frozen=True, slots=True)
class CandidateScore:
    quality: float  # predicted expected score, 0-1
    cost: float  # expected USD for this request
    latency_ms: float  # expected end-to-end latency
    score: float  # final score under the optimize mode (higher is better)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    model: str
    task: str
    confidence: float
    complexity: Complexity
    complexity_score: float
    candidates: Mapping[str, CandidateScore]
    optimize: str
    router_version: str
    routing_time_ms: float
    trained: bool = True  # False for the catalog-prior router used before any model is promoted
    task_overridden: bool = False
    fallback_from: str | None = None  # set by the caller when the chosen model was unavailable
    extra: Mapping[str, object] = field(default_factory=dict)
