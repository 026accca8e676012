"""Optuna studies over InferRoute's (or a baseline's) hyperparameters and the routing policies.

- `objective(trial, ctx)`: suggest hyperparameters, train on the train split, score the validation
  suite benchmark by benchmark (reporting the running mean as the step value so the pruner can stop
  a poor trial early), return the suite score. Testable with `optuna.trial.FixedTrial`.
- `policy_objective(trial, ctx)`: multi-objective (mean quality up, mean cost down) over one
  optimize mode's policy parameters, judged on the routing decisions of an already trained router on
  a benchmark with costs; the Pareto front is `study.best_trials`. With `ctx.order_prompts` (real
  prompts, e.g. ShareGPT) every trial also routes them in all four modes and counts the broken mode
  orders (`evals.traffic.mode_order`: spend cost <= balanced <= quality, quality reversed, latency
  lowest): a constraint for the sampler (feasible when 0), and `tune_policy` keeps only the trials
  that break none.
Studies live in their own SQLite file (`optuna.db`, never mlflow.db: both keep an `alembic_version`
table), `load_if_exists=True`; the study name is the MLflow experiment name and every trial is a
nested MLflow run under one parent run (optuna's MLflowCallback is deprecated).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd

from evals import our_router, tracking, traffic
from evals.baselines import get_baseline
from evals.harness import BenchData, BenchmarkResult, BenchmarkSpec, evaluate_on

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = f"sqlite:///{tracking.REPO_ROOT / 'optuna.db'}"
Space = Callable[[optuna.Trial], dict[str, Any]]


def router_space(t: optuna.Trial) -> dict[str, Any]:
    """InferRoute's quality-model and classifier knobs (RouterConfig keys)."""
    return {
        "lat_hidden": t.suggest_int("lat_hidden", 16, 128, log=True),
        "lat_epochs": t.suggest_int("lat_epochs", 5, 40, log=True),
        "lat_lr": t.suggest_float("lat_lr", 1e-3, 1e-2, log=True),
        "lat_weight_decay": t.suggest_float("lat_weight_decay", 1e-6, 1e-2, log=True),
        "lat_weight_power": t.suggest_float("lat_weight_power", 0.0, 1.0),
        "quality_blend": t.suggest_float("quality_blend", 0.0, 1.0),
        "clf_c": t.suggest_float("clf_c", 0.5, 16.0, log=True),
    }


SPACES: dict[str, Space] = {
    "router": router_space,
    "knn": lambda t: {"k": t.suggest_int("k", 5, 120, log=True)},
    "mf": lambda t: {
        "dim": t.suggest_int("dim", 16, 256, log=True),
        "epochs": t.suggest_int("epochs", 5, 40),
        "lr": t.suggest_float("lr", 3e-4, 1e-2, log=True),
    },
    "bert_head": lambda t: {
        "hidden": t.suggest_int("hidden", 64, 512, log=True),
        "epochs": t.suggest_int("epochs", 5, 40),
        "lr": t.suggest_float("lr", 3e-4, 1e-2, log=True),
    },
}

# optimize mode -> policy parameters (names in InferRoute's RouterConfig) and their ranges
POLICY_SPACES: dict[str, dict[str, tuple[float, float]]] = {
    "balanced": {
        "policy_balanced_w_quality": (0.05, 1.0),
        "policy_balanced_w_cost": (0.0, 1.0),
        "policy_balanced_w_latency": (0.0, 0.5),
        "policy_balanced_epsilon": (0.0, 1.0),
    },
    "quality": {"policy_quality_w_cost": (0.0, 0.5), "policy_quality_epsilon": (0.0, 0.1)},
    "cost": {"policy_cost_w_quality": (0.0, 1.0), "policy_cost_epsilon": (0.0, 0.5)},
    "latency": {"policy_latency_w_quality": (0.0, 0.5), "policy_latency_epsilon": (0.0, 0.5)},
}


def with_policy(router: Any, params: Mapping[str, Any]) -> Any:
    """A shallow copy of a trained router whose config carries new policy parameters."""
    tuned = copy.copy(router)
    tuned.config = router.config.with_overrides(**params)
    return tuned


@dataclass(slots=True)
class TuneContext:
    """What a trial needs: the data, the validation benchmarks, what is tuned, where it logs."""

    target: str  # "router" or a baseline name
    df: pd.DataFrame  # long table with a split column
    train_df: pd.DataFrame
    specs: Sequence[BenchmarkSpec]  # judged on the validation split
    labels: pd.DataFrame | None = None
    base_overrides: Mapping[str, Any] = field(default_factory=dict)
    log_mlflow: bool = True
    order_prompts: Sequence[str] = ()  # real prompts the mode orders are checked on (policy)
    order_pools: Sequence[traffic.Pool] = traffic.POOLS
    _bench: dict[str, BenchData] = field(default_factory=dict)

    def bench(self, spec: BenchmarkSpec) -> BenchData:
        if spec.name not in self._bench:
            self._bench[spec.name] = BenchData.build(self.df, spec)
        return self._bench[spec.name]


def primary(br: BenchmarkResult) -> float:
    if br.kind == "pair":
        return br.metrics["apgr"]
    return br.metrics.get("aiq", br.metrics["best_quality"])


def _build(ctx: TuneContext, params: Mapping[str, Any]) -> Any:
    if ctx.target == "router":
        labels = ctx.labels if ctx.labels is not None else pd.DataFrame()
        return our_router.QualityView(
            our_router.train(ctx.train_df, labels, {**ctx.base_overrides, **params})
        )
    return get_baseline(ctx.target, **{**ctx.base_overrides, **params}).fit(ctx.train_df)


def objective(trial: optuna.Trial, ctx: TuneContext) -> float:
    params = SPACES[ctx.target](trial)
    model = _build(ctx, params)
    scores, metrics = [], {}
    for step, spec in enumerate(ctx.specs):
        bd = ctx.bench(spec)
        if not bd.prompts:
            continue
        br = evaluate_on(model, bd)
        scores.append(primary(br))
        metrics.update({f"{spec.name}.{k}": v for k, v in br.metrics.items()})
        trial.report(float(np.mean(scores)), step)
        if trial.should_prune():
            _log_trial(ctx, trial, params, metrics, pruned=True)
            raise optuna.TrialPruned()
    value = float(np.mean(scores))
    _log_trial(ctx, trial, params, {**metrics, "suite_score": value})
    return value


def policy_objective(
    trial: optuna.Trial, ctx: TuneContext, mode: str, router: Any, spec: BenchmarkSpec
) -> tuple[float, float]:
    """(mean quality, mean cost) of `router.route(..., optimize=mode)` under suggested params."""
    params = {k: trial.suggest_float(k, lo, hi) for k, (lo, hi) in POLICY_SPACES[mode].items()}
    tuned = with_policy(router, params)
    bd = ctx.bench(spec)
    cost = bd.realised_cost()
    col = {m: j for j, m in enumerate(bd.models)}
    qs, cs = [], []
    for i, p in enumerate(bd.prompts):
        d = tuned.route([{"role": "user", "content": p}], bd.models, optimize=mode)
        qs.append(bd.true[i, col[d.model]])
        cs.append(cost[i, col[d.model]])
    result = (float(np.mean(qs)), float(np.nanmean(cs)))
    metrics = {"quality": result[0], "cost": result[1]}
    if ctx.order_prompts:
        problems = order_problems(tuned, ctx.order_prompts, ctx.order_pools)
        trial.set_user_attr("constraint", [float(len(problems))])
        trial.set_user_attr("order_problems", problems)
        metrics["order_violations"] = float(len(problems))
    _log_trial(ctx, trial, params, metrics)
    return result


def order_problems(
    router: Any, prompts: Sequence[str], pools: Sequence[traffic.Pool] = traffic.POOLS
) -> list[str]:
    """The mode orders `router`'s policy breaks on `prompts` (evals.traffic.mode_order)."""
    return traffic.mode_order(traffic.mode_summary(traffic.route_traffic(router, prompts, pools)))


def keeps_order(trial: optuna.trial.FrozenTrial) -> bool:
    return float(trial.user_attrs.get("constraint", [0.0])[0]) <= 0.0


def _constraints(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    return [float(x) for x in trial.user_attrs.get("constraint", [0.0])]


def _log_trial(
    ctx: TuneContext,
    trial: optuna.Trial,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    pruned: bool = False,
) -> None:
    if not ctx.log_mlflow or isinstance(trial, optuna.trial.FixedTrial):
        return
    tags = {"optuna.trial": str(trial.number), "optuna.pruned": str(pruned)}
    name = f"trial-{trial.number}"
    exp = trial.study.study_name
    with tracking.run(exp, name, {**ctx.base_overrides, **params}, tags=tags, nested=True):
        tracking.log_metrics(metrics)


def make_study(
    name: str,
    storage: str | None = DEFAULT_STORAGE,
    directions: Sequence[Literal["maximize", "minimize"]] = ("maximize",),
    seed: int = 0,
    constrained: bool = False,
) -> optuna.Study:
    """`constrained`: the sampler reads each trial's `constraint` user attribute (<= 0 feasible)."""
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3) if len(directions) == 1 else None
    sampler = optuna.samplers.TPESampler(
        seed=seed, constraints_func=_constraints if constrained else None
    )
    return optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        directions=list(directions),
        sampler=sampler,
        pruner=pruner,
    )


def tune(
    ctx: TuneContext,
    n_trials: int,
    study_name: str,
    storage: str | None = DEFAULT_STORAGE,
    config: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Run a single-objective study; one MLflow parent run, one nested run per trial."""
    study = make_study(study_name, storage)
    params = {"target": ctx.target, "n_trials": n_trials, "storage": storage or "memory"}
    with tracking.run(study_name, f"study-{ctx.target}", {**params, **dict(config or {})}):
        study.optimize(lambda t: objective(t, ctx), n_trials=n_trials, show_progress_bar=False)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if done:
            tracking.log_metrics({"best_value": study.best_value})
            tracking.log_json(
                {"best_params": study.best_params, "best_value": study.best_value}, "best.json"
            )
    return study


def tune_policy(
    ctx: TuneContext,
    router: Any,
    mode: str,
    spec: BenchmarkSpec,
    n_trials: int,
    study_name: str,
    storage: str | None = DEFAULT_STORAGE,
) -> optuna.Study:
    """Multi-objective study (quality up, cost down) of one optimize mode's policy parameters.

    With `ctx.order_prompts` the sampler is constrained to keep the mode orders, and the logged
    Pareto front (`pareto_front`) holds only the trials that keep them (`pareto_front_kept`)."""
    constrained = bool(ctx.order_prompts)
    study = make_study(
        study_name, storage, directions=("maximize", "minimize"), constrained=constrained
    )
    with tracking.run(study_name, f"policy-{mode}", {"mode": mode, "benchmark": spec.name}):
        study.optimize(lambda t: policy_objective(t, ctx, mode, router, spec), n_trials=n_trials)
        front = [{"params": t.params, "values": t.values} for t in pareto_front(study, constrained)]
        tracking.log_json({"pareto_front": front, "order_checked": constrained}, "pareto.json")
    return study


def pareto_front(study: optuna.Study, keep_order: bool = True) -> list[optuna.trial.FrozenTrial]:
    """The study's Pareto front, less the trials that break the mode orders (when checked)."""
    return [t for t in study.best_trials if not keep_order or keeps_order(t)]


def with_split(specs: Sequence[BenchmarkSpec], split: str) -> list[BenchmarkSpec]:
    return [s if s.eval_split == "all" else dataclasses.replace(s, eval_split=split) for s in specs]
