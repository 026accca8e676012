"""Judge a router (or a baseline) on held-out prompts: `run_eval(model, df, specs) -> EvalResult`.

Anything with `predict_quality(prompts, models) -> (n, m)` can be judged. Two kinds of benchmark:
- `pair` (RouteLLM's protocol): strong vs weak model; the routing score is predicted strong quality
  minus predicted weak quality, swept over RouteLLM's quantile thresholds -> APGR, CPT(50|80%).
- `multi` (RouterBench's protocol): every prompt goes to argmax_m q[m] - cost[m] / w over a grid of
  willingness-to-pay w -> a cost-quality curve, and AIQ over [0, the dearest single model's cost].
`df` is the long score table with a `split` column; rows of `spec.eval_split` are judged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm.auto import tqdm

from evals import embeddings
from evals import metrics as M

logger = logging.getLogger(__name__)

WILLINGNESS = tuple(float(w) for w in np.geomspace(1e-7, 1e4, 56)) + (float("inf"),)


class QualityPredictor(Protocol):
    def predict_quality(
        self, prompts: Sequence[str], models: Sequence[str]
    ) -> NDArray[np.float64]: ...


@dataclass(frozen=True, slots=True)
class BenchmarkSpec:
    name: str
    datasets: tuple[str, ...]
    kind: Literal["pair", "multi"]
    strong: str | None = None
    weak: str | None = None
    models: tuple[str, ...] | None = None  # multi: the pool (default: every fully scored model)
    eval_split: str = "test"  # "all": the benchmark is held out of training entirely
    # where the data has no costs: USD per million tokens per model, with tokens estimated as
    # len(prompt) / 4 in and `output_tokens` out
    prices: Mapping[str, float] | None = None
    output_tokens: float = 300.0
    max_prompts: int = 0  # >0: judge a seeded sample of this many prompts (quick runs, tests)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchmarkSpec:
        d = dict(d)
        d["datasets"] = tuple(d["datasets"])
        if d.get("models") is not None:
            d["models"] = tuple(d["models"])
        return cls(**d)


@dataclass(slots=True)
class BenchmarkResult:
    benchmark: str
    kind: str
    n_prompts: int
    metrics: dict[str, float]
    curve: dict[str, list[float]] = field(default_factory=dict)  # x, y (pct or cost, quality)
    # multi with costs: each prompt's realised (cost, quality) per willingness and the AIQ range,
    # for paired bootstrap intervals (`evals.experiments.add_aiq_intervals`); not logged
    routed: tuple[NDArray[np.float64], NDArray[np.float64], float] | None = None
    # pair: each prompt's predicted strong-minus-weak gap and the two true scores, for bootstrap
    # intervals on APGR (`evals.metrics.apgr_bootstrap`); not logged
    pair: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None = None


@dataclass(slots=True)
class EvalResult:
    router: str
    benchmarks: dict[str, BenchmarkResult] = field(default_factory=dict)
    routing_ms: dict[str, float] = field(default_factory=dict)

    def flat_metrics(self) -> dict[str, float]:
        out = {f"{b}.{k}": v for b, r in self.benchmarks.items() for k, v in r.metrics.items()}
        out.update({f"routing_ms.{k}": v for k, v in self.routing_ms.items()})
        return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


@dataclass(frozen=True, slots=True)
class BenchData:
    """One benchmark's evaluation prompts x models: true scores and realised costs."""

    spec: BenchmarkSpec
    prompts: list[str]
    models: list[str]
    true: NDArray[np.float64]
    cost: NDArray[np.float64]  # NaN where unknown
    expected_cost: NDArray[np.float64]  # per model, what a router may assume before routing

    @classmethod
    def build(cls, df: pd.DataFrame, spec: BenchmarkSpec) -> BenchData:
        rows = df[df["dataset"].isin(spec.datasets)]
        if spec.eval_split != "all":
            rows = rows[rows["split"] == spec.eval_split]
        if spec.kind == "pair":
            assert spec.strong and spec.weak, f"{spec.name}: a pair benchmark names strong and weak"
            want: list[str] | None = [spec.strong, spec.weak]
        else:
            want = list(spec.models) if spec.models else None
        true = rows.pivot_table(index="prompt", columns="model", values="score", aggfunc="mean")
        if want is not None:
            missing = [m for m in want if m not in true.columns]
            if missing:
                raise ValueError(f"{spec.name}: models {missing} not in {spec.datasets}")
            true = true[want]
        else:  # keep the models that score (nearly) every prompt
            keep = true.columns[true.notna().mean() >= 0.95]
            true = true[keep]
        true = true.dropna()
        if 0 < spec.max_prompts < len(true):
            rng = np.random.default_rng(0)
            true = true.iloc[np.sort(rng.choice(len(true), spec.max_prompts, replace=False))]
        cost = rows.pivot_table(index="prompt", columns="model", values="cost_usd", aggfunc="mean")
        cost = cost.reindex(index=true.index, columns=true.columns)
        if spec.prices:
            tokens = np.array([len(str(p)) / 4.0 + spec.output_tokens for p in true.index])
            for m in true.columns:
                if m in spec.prices and cost[m].isna().all():
                    cost[m] = tokens * float(spec.prices[m]) / 1e6
        exp = cost.mean(axis=0).to_numpy(dtype=np.float64)
        return cls(
            spec,
            [str(p) for p in true.index],
            [str(m) for m in true.columns],
            true.to_numpy(dtype=np.float64),
            cost.to_numpy(dtype=np.float64),
            exp,
        )

    @property
    def has_cost(self) -> bool:
        return bool(np.isfinite(self.expected_cost).all())

    def realised_cost(self) -> NDArray[np.float64]:
        return np.where(np.isfinite(self.cost), self.cost, self.expected_cost[None, :])


def _pair_metrics(bd: BenchData, q: NDArray[np.float64], num_results: int) -> BenchmarkResult:
    strong, weak = bd.true[:, 0], bd.true[:, 1]
    s_perf, w_perf = float(strong.mean()), float(weak.mean())
    pct, perf = M.threshold_sweep(q[:, 0] - q[:, 1], strong, weak, num_results)
    metrics = {
        "apgr": M.apgr(pct, perf, w_perf, s_perf),
        "cpt50": M.cpt(pct, perf, w_perf, s_perf, 0.5),
        "cpt80": M.cpt(pct, perf, w_perf, s_perf, 0.8),
        "strong_quality": s_perf,
        "weak_quality": w_perf,
    }
    return BenchmarkResult(
        bd.spec.name,
        "pair",
        len(bd.prompts),
        metrics,
        {"x": list(pct), "y": list(perf)},
        pair=(q[:, 0] - q[:, 1], strong, weak),
    )


def _multi_metrics(bd: BenchData, q: NDArray[np.float64]) -> BenchmarkResult:
    cost = bd.realised_cost()
    exp = bd.expected_cost if bd.has_cost else np.zeros(len(bd.models))
    per_prompt = M.routed_outcomes(q, bd.true, cost, exp, WILLINGNESS)
    c, y = M.curve_means(*per_prompt)
    metrics = {"best_quality": float(y[-1]), "cost_at_best": float(c[-1])}
    routed = None
    if bd.has_cost:
        c_max = float(np.nanmean(cost, axis=0).max())
        metrics["aiq"] = M.aiq(c, y, c_min=0.0, c_max=c_max)
        routed = (*per_prompt, c_max)
    return BenchmarkResult(
        bd.spec.name, "multi", len(bd.prompts), metrics, {"x": list(c), "y": list(y)}, routed
    )


def evaluate_on(model: QualityPredictor, bd: BenchData, num_results: int = 10) -> BenchmarkResult:
    q = np.asarray(model.predict_quality(bd.prompts, bd.models), dtype=np.float64)
    if q.shape != bd.true.shape:
        raise ValueError(f"predict_quality returned {q.shape}, expected {bd.true.shape}")
    return _pair_metrics(bd, q, num_results) if bd.spec.kind == "pair" else _multi_metrics(bd, q)


def time_routing(
    model: QualityPredictor, prompts: Sequence[str], models: Sequence[str], n: int = 30
) -> dict[str, float]:
    """Per-prompt wall time of one `predict_quality` call (ms), p50/p95/p99 over `n` prompts."""
    times = []
    with embeddings.uncached():  # a served request has no cached embedding
        for p in list(prompts)[:n]:
            t0 = time.perf_counter()
            model.predict_quality([p], models)
            times.append((time.perf_counter() - t0) * 1000.0)
    return M.routing_time_percentiles(times) if times else {}


def run_eval(
    model: QualityPredictor,
    df: pd.DataFrame,
    specs: Sequence[BenchmarkSpec],
    *,
    name: str = "router",
    num_results: int = 10,
    timing_prompts: int = 30,
) -> EvalResult:
    result = EvalResult(name)
    for spec in tqdm(list(specs), desc=f"judge {name}", disable=None, leave=False):
        bd = BenchData.build(df, spec)
        if not bd.prompts:
            logger.warning("benchmark %s has no evaluation prompts; skipped", spec.name)
            continue
        result.benchmarks[spec.name] = evaluate_on(model, bd, num_results)
        if timing_prompts and not result.routing_ms:
            result.routing_ms = time_routing(model, bd.prompts, bd.models, timing_prompts)
    return result


def reference_results(df: pd.DataFrame, specs: Sequence[BenchmarkSpec]) -> dict[str, EvalResult]:
    """Router-free references per benchmark: every single model, the oracle and the zero router."""
    out: dict[str, EvalResult] = {}
    for spec in specs:
        bd = BenchData.build(df, spec)
        if not bd.prompts:
            continue
        cost = bd.realised_cost()
        mean_c, mean_q = np.nanmean(cost, axis=0), bd.true.mean(axis=0)
        for j, m in enumerate(bd.models):
            res = out.setdefault(f"single:{m}", EvalResult(f"single:{m}"))
            metrics = {"quality": float(mean_q[j])}
            if np.isfinite(mean_c[j]):
                metrics["cost"] = float(mean_c[j])
            res.benchmarks[spec.name] = BenchmarkResult(
                spec.name, spec.kind, len(bd.prompts), metrics
            )
        oracle = out.setdefault("oracle", EvalResult("oracle"))
        oracle.benchmarks[spec.name] = evaluate_on(_Truth(bd), bd)
        if spec.kind == "multi" and bd.has_cost:
            c_max = float(mean_c.max())
            zero = out.setdefault("zero_router", EvalResult("zero_router"))
            hull = M.non_decreasing_convex_hull(mean_c, mean_q)
            zero.benchmarks[spec.name] = BenchmarkResult(
                spec.name,
                "multi",
                len(bd.prompts),
                {"aiq": M.aiq(mean_c, mean_q, c_min=0.0, c_max=c_max), "best_quality": hull[-1, 1]},
                {"x": list(hull[:, 0]), "y": list(hull[:, 1])},
            )
    return out


class _Truth:
    """The oracle as a predictor: the true scores of the benchmark it was built for."""

    def __init__(self, bd: BenchData) -> None:
        self._t = pd.DataFrame(bd.true, index=bd.prompts, columns=bd.models)

    def predict_quality(self, prompts: Sequence[str], models: Sequence[str]) -> NDArray[np.float64]:
        return self._t.reindex(index=list(prompts), columns=list(models)).to_numpy(np.float64)
