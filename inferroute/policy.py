"""The Router ABC (the decision lives here, in the base class) and the optimize-mode policies.

Each optimize mode is a policy over the three predictions, with parameters in `RouterConfig` that
the evals tune with Optuna:

    feasible_j = quality_j >= max(quality) - epsilon_mode     (and the model is available)
    score_j    = feasible_j * (w_q * quality_j + w_c * (1 - cost_rel_j) + w_l * (1 - latency_rel_j))

where cost_rel / latency_rel are the pool's log-scale min-max ranks (0 = cheapest / fastest) and
the weights are normalised to sum to 1, so every score is in [0, 1]. With the defaults: `quality`
is "the cheapest model within 0.01 of the best predicted quality", `cost` "the cheapest model
within 0.30 of the best" (cost outweighs quality 4:1), `latency` "the fastest model within 0.30 of
the best", and `balanced` a weighted trade-off within 0.30 of the best (0.8 quality, 0.15 cost,
0.05 latency: on 300 ShareGPT prompts over {Mixtral, GPT-4-1106} it sends 24% to GPT-4 where
`cost` sends 12% and `quality` 98%; at 0.7 / 0.2 / 0.1 it made the same picks as `cost`).

The modes are ordered by construction for a fixed prompt: with quality slacks epsilon_quality <=
epsilon_balanced <= epsilon_cost and cost-to-quality weight ratios in the same order (and no other
term), the chosen model's expected cost can only go down and its predicted quality with it from
`quality` to `balanced` to `cost` (a larger feasible set and a higher price on cost never pick a
dearer model). `balanced`'s small latency weight can break this only where the faster model is the
dearer one; `evals.traffic.mode_order` checks the orders on real prompts, and the policy tuning
(`evals.tuning`) keeps them.

Low confidence: when the task confidence is below `low_confidence_threshold` (and the caller did
not name the task), the prompt-specific quality estimate is a bet on a task the router does not
recognise. The decision then uses each model's general quality (its average over every task, or
its card's prior) under the same mode: `quality` takes the strongest model in general, `cost` the
cheapest model within its slack of the generally strongest, and the decision says so
(`extra["low_confidence"]`, `extra["quality_basis"] == "general"`).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inferroute.catalog import CardBook
from inferroute.config import RouterConfig
from inferroute.costs import count_tokens, expected_cost, expected_latency_ms
from inferroute.errors import RoutingError
from inferroute.taxonomy import TASK_NAMES
from inferroute.types import (
    OPTIMIZE,
    OPTIMIZE_MODES,
    CandidateScore,
    LiveStats,
    ModelCard,
    RouteDecision,
)

FloatArray = npt.NDArray[np.float64]
SAVE_FORMAT = 2  # router.json's "format"; 2: the joint latent quality model (lat_* arrays)


@dataclass(frozen=True, slots=True)
class Analysis:
    """What a router predicts for one prompt and pool, before the policy decides."""

    task: str
    confidence: float
    complexity_score: float
    quality: FloatArray  # per pool model, 0-1
    output_tokens: FloatArray  # per pool model
    general_quality: FloatArray | None = None  # per pool model, task-agnostic (None: = quality)


def messages_to_text(messages: Sequence[Mapping[str, Any]]) -> tuple[str, int]:
    """The text the router reads (every user turn, text parts only) and the number of user turns."""
    parts: list[str] = []
    for msg in messages:
        if msg.get("role", "user") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
            )
    if not parts:  # no user turn: fall back to whatever text there is
        parts = [str(m.get("content", "")) for m in messages if isinstance(m.get("content"), str)]
    return "\n\n".join(parts), max(len(parts), 1)


def policy_params(config: RouterConfig, mode: str) -> tuple[float, float, float, float]:
    """The mode's (w_quality, w_cost, w_latency, epsilon) from `config` (names: `OPTIMIZE`)."""
    info = OPTIMIZE.get(mode)
    if info is None:
        raise RoutingError(
            f"unknown optimize mode {mode!r}; expected one of: {', '.join(OPTIMIZE_MODES)}"
        )
    wq, wc, wl, eps = (float(getattr(config, name)) for name in info.policy_params)
    return wq, wc, wl, eps


def _rel(values: FloatArray) -> FloatArray:
    logs = np.log(np.maximum(values, 1e-12))
    span = logs.max() - logs.min()
    if span <= 1e-12:
        return np.zeros_like(values)
    out: FloatArray = (logs - logs.min()) / span
    return out


def policy_scores(
    quality: FloatArray,
    cost: FloatArray,
    latency: FloatArray,
    available: npt.NDArray[np.bool_],
    params: tuple[float, float, float, float],
) -> FloatArray:
    wq, wc, wl, eps = params
    total = max(wq + wc + wl, 1e-12)
    utility = (wq * quality + wc * (1 - _rel(cost)) + wl * (1 - _rel(latency))) / total
    pool_ok = available if available.any() else np.ones_like(available)
    best = quality[pool_ok].max()
    feasible = pool_ok & (quality >= best - eps - 1e-12)
    out: FloatArray = np.where(feasible, np.clip(utility, 0.0, 1.0), 0.0)
    return out


class Router(ABC):
    """Base router: subclasses predict (`analyse`); `route` applies the policy and decides."""

    name: str = "base"
    trained: bool = True

    def __init__(
        self, config: RouterConfig, cards: Mapping[str, ModelCard] | CardBook, version: str
    ):
        self.config = config
        self.book = cards if isinstance(cards, CardBook) else CardBook(cards, {})
        self.version = version
        self.complexity_cuts: tuple[float, float] = (1 / 3, 2 / 3)

    @abstractmethod
    def analyse(
        self, text: str, turns: int, pool: Sequence[str], cards: Mapping[str, ModelCard]
    ) -> Analysis: ...

    @abstractmethod
    def classify(self, prompts: Sequence[str]) -> list[tuple[str, float]]: ...

    @abstractmethod
    def predict_quality(
        self,
        prompts: Sequence[str],
        models: Sequence[str],
        cards: Mapping[str, ModelCard] | None = None,
    ) -> FloatArray: ...

    def save(self, path: str | Path) -> None:
        """Save to a directory that `inferroute.load_router` reads back: `router.json` (kind,
        format, version, config, cards and what the kind's `save_state` adds) and the kind's own
        files (`save_state` writes them; no pickle)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "format": SAVE_FORMAT,
            "kind": self.name,
            "version": self.version,
            "config": self.config.to_flat_dict(),
            "cards": self.book.to_dict(),
        }
        meta.update(self.save_state(out))
        (out / "router.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")

    def save_state(self, path: Path) -> dict[str, Any]:
        """What this kind adds to router.json (its own files go under `path`). Default: nothing
        beyond the config and the cards."""
        return {}

    @classmethod
    @abstractmethod
    def from_saved(
        cls, path: Path, meta: Mapping[str, Any], config: RouterConfig, book: CardBook
    ) -> Router:
        """The router `save` wrote to `path` (`meta`: its router.json, config and cards decoded)."""

    def known_models(self) -> list[str]:
        return sorted(self.book.cards)

    def _card(self, model: str, cards: Mapping[str, ModelCard]) -> ModelCard:
        card = cards.get(model) or self.book.card(model)
        if card is None:
            raise RoutingError(
                f"model {model!r} is not known to router {self.version!r}; pass a ModelCard for it "
                f"in `cards` (known: {', '.join(self.known_models()[:20])}, ...)"
            )
        return card

    def complexity_label(self, score: float) -> str:
        lo, hi = self.complexity_cuts
        return "simple" if score < lo else ("medium" if score < hi else "complex")

    def route(
        self,
        messages: Sequence[Mapping[str, Any]],
        pool: Sequence[str],
        optimize: str = "balanced",
        task: str | None = None,
        *,
        cards: Mapping[str, ModelCard] | None = None,
        live: Mapping[str, LiveStats] | None = None,
    ) -> RouteDecision:
        start = time.perf_counter()
        params = policy_params(self.config, optimize)
        if task is not None and task not in TASK_NAMES:
            raise RoutingError(f"unknown task {task!r}; expected one of: {', '.join(TASK_NAMES)}")
        pool = list(dict.fromkeys(pool))
        if not pool:
            raise RoutingError("empty model pool")
        extra_cards = cards or {}
        pool_cards = [self._card(m, extra_cards) for m in pool]
        text, turns = messages_to_text(messages)
        card_map = dict(zip(pool, pool_cards, strict=True))
        analysis = self.analyse(text, turns, pool, card_map)
        chosen_task, confidence = analysis.task, analysis.confidence
        quality = analysis.quality
        out_tokens = analysis.output_tokens
        if task is not None:
            chosen_task, confidence = task, 1.0
            out_tokens = np.array(
                [
                    self.expected_output_tokens(m, task, c)
                    for m, c in zip(pool, pool_cards, strict=True)
                ]
            )
        prompt_tokens = count_tokens(text)
        live = live or {}
        cost = np.array(
            [
                expected_cost(c, prompt_tokens, o)
                for c, o in zip(pool_cards, out_tokens, strict=True)
            ]
        )
        latency = np.array(
            [
                expected_latency_ms(c, o, live.get(m), self.config.queue_penalty)
                for m, c, o in zip(pool, pool_cards, out_tokens, strict=True)
            ]
        )
        available = np.array([live.get(m, LiveStats()).available for m in pool])
        low = task is None and confidence < self.config.low_confidence_threshold
        extra: dict[str, object] = {}
        if low:
            extra = {"low_confidence": True, "quality_basis": "general"}
            if analysis.general_quality is not None:
                quality = analysis.general_quality
        scores = policy_scores(quality, cost, latency, available, params)
        pick = int(np.argmax(scores))
        candidates = {
            m: CandidateScore(
                float(quality[i]), float(cost[i]), float(latency[i]), float(scores[i])
            )
            for i, m in enumerate(pool)
        }
        return RouteDecision(
            model=pool[pick],
            task=chosen_task,
            confidence=float(confidence),
            complexity=self.complexity_label(analysis.complexity_score),  # type: ignore[arg-type]
            complexity_score=float(analysis.complexity_score),
            candidates=candidates,
            optimize=optimize,
            router_version=self.version,
            routing_time_ms=(time.perf_counter() - start) * 1000.0,
            trained=self.trained,
            task_overridden=task is not None,
            extra=extra,
        )

    def expected_output_tokens(self, model: str, task: str, card: ModelCard) -> float:
        return self.config.default_output_tokens
