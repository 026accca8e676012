"""What the research notebooks compute: settings, per-model tables, agreement, calibration bins.

The notebooks in `notebooks/` only import, call and plot; every number they show comes from here,
from the rest of `evals` or from `inferroute`, and is tested in tests/notebooks/.

Settings come from the environment so CI can run every notebook small and with throw-away stores:
- `INFERBASE_NB_FAST=1`: the small, fast parameter set (CI); unset: the full one (people).
- `MLFLOW_TRACKING_URI`: default `sqlite:///<repo>/mlflow.db` (what `make lab` and `mlflow ui` use).
- `INFERBASE_OPTUNA_STORAGE`: default `sqlite:///<repo>/optuna.db` (never the MLflow file).
- `INFERBASE_NB_PORT`: the gateway port notebook 5 starts (default 18500).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evals.harness import EvalResult

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_ENV = "INFERBASE_NB_FAST"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class NotebookSettings:
    """One flat parameter set shared by the notebooks (logged with their runs)."""

    fast: bool
    tracking_uri: str
    optuna_storage: str
    max_train_prompts: int  # per training dataset (evals.suite cap)
    benchmarks: tuple[str, ...]  # the suite benchmarks the notebooks judge on
    baselines: tuple[str, ...]
    n_trials: int  # hyperparameter study
    n_policy_trials: int  # multi-objective policy study
    router_overrides: Mapping[str, Any] = field(default_factory=dict)
    gateway_port: int = 18500
    engine_port_base: int = 18510

    def suite(self) -> Any:
        """The evaluation suite (evals/configs/benchmarks.yaml) cut to these settings."""
        from evals.suite import SuiteConfig

        cfg = SuiteConfig.load(max_train_prompts_per_dataset=self.max_train_prompts)
        return cfg.only(list(self.benchmarks))


FAST_BENCHMARKS = ("gsm8k", "mt_bench", "routerbench")
# small and quick InferRoute (RouterConfig keys): token-table embedder without distillation, a few
# hundred labelled prompts per task, a small hashed n-gram space
FAST_ROUTER = {"static_source": "input", "clf_max_per_class": 150, "clf_hash_features": 16384}
FULL_BENCHMARKS = ("mmlu", "gsm8k", "mt_bench", "alpaca_eval2", "routerbench", "llmrouter")


def settings(fast: bool | None = None) -> NotebookSettings:
    """The parameter set: `fast` overrides `INFERBASE_NB_FAST` when given (papermill parameter)."""
    fast = _truthy(os.environ.get(FAST_ENV)) if fast is None else fast
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"
    storage = os.environ.get("INFERBASE_OPTUNA_STORAGE") or f"sqlite:///{REPO_ROOT / 'optuna.db'}"
    port = int(os.environ.get("INFERBASE_NB_PORT", "18500"))
    common: dict[str, Any] = {
        "tracking_uri": tracking,
        "optuna_storage": storage,
        "gateway_port": port,
    }
    common["engine_port_base"] = int(os.environ.get("INFERBASE_NB_ENGINE_PORT_BASE", port + 10))
    if fast:
        return NotebookSettings(
            fast=True,
            max_train_prompts=300,
            benchmarks=FAST_BENCHMARKS,
            baselines=("random", "knn"),
            n_trials=3,
            n_policy_trials=8,
            router_overrides=FAST_ROUTER,
            **common,
        )
    return NotebookSettings(
        fast=False,
        max_train_prompts=2000,
        benchmarks=FULL_BENCHMARKS,
        baselines=("random", "knn", "mf", "sw_ranking", "bert_head"),
        n_trials=20,
        n_policy_trials=40,
        **common,
    )


def setup(fast: bool | None = None) -> NotebookSettings:
    """Offline, quiet, Agg matplotlib, tracking URI exported; returns the settings."""
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }.items():
        os.environ.setdefault(key, value)
    shared = REPO_ROOT.parent / "shared" / "data"
    if "INFERBASE_DATA_DIR" not in os.environ and shared.is_dir():
        os.environ["INFERBASE_DATA_DIR"] = str(shared)
    import matplotlib

    matplotlib.use("Agg")  # figures are returned and displayed explicitly
    s = settings(fast)
    os.environ["MLFLOW_TRACKING_URI"] = s.tracking_uri
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("mlflow", "alembic", "optuna", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return s


# --------------------------------------------------------------------------- data tour


def model_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model): prompts scored, mean score, mean cost (USD) and output length."""
    g = df.groupby(["dataset", "model"], sort=True)
    out = pd.DataFrame(
        {
            "prompts": g["prompt_id"].nunique(),
            "mean_score": g["score"].mean(),
            "mean_cost_usd": g["cost_usd"].mean(),
            "mean_output_chars": g["output_chars"].mean(),
        }
    )
    return out.reset_index()


def wide_scores(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Prompts x models of one dataset, only prompts every model scored."""
    rows = df[df["dataset"] == dataset]
    wide = rows.pivot_table(index="prompt_id", columns="model", values="score", aggfunc="mean")
    return wide.dropna()


def agreement_matrix(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """1 - mean |score_a - score_b| over shared prompts (0/1 scores: share of same verdicts)."""
    w = wide_scores(df, dataset).to_numpy(dtype=np.float64)
    models = list(wide_scores(df, dataset).columns)
    diff = np.abs(w[:, :, None] - w[:, None, :]).mean(axis=0)
    return pd.DataFrame(1.0 - diff, index=models, columns=models)


def headroom(df: pd.DataFrame, dataset: str) -> dict[str, Any]:
    """How much a perfect router could gain over the best single model on one dataset.

    `oracle` = mean over prompts of the best score any model got; `rescued` = share of prompts where
    the best single model scores below the best model for that prompt.
    """
    wide = wide_scores(df, dataset)
    means = wide.mean(axis=0)
    best = str(means.idxmax())
    per_prompt_best = wide.max(axis=1)
    return {
        "dataset": dataset,
        "prompts": len(wide),
        "models": wide.shape[1],
        "best_model": best,
        "best_single": float(means[best]),
        "oracle": float(per_prompt_best.mean()),
        "rescued": float((wide[best] < per_prompt_best).mean()),
    }


# --------------------------------------------------------------------------- classifier


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10):
    """Equal-width confidence bins: count, mean confidence and accuracy (empty bins left out).

    The same binning as `evals.metrics.ece`: sum(n / N * |accuracy - confidence|) over these rows.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    bins = np.clip((conf * n_bins).astype(int), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = bins == b
        if m.any():
            rows.append(
                {
                    "lo": b / n_bins,
                    "hi": (b + 1) / n_bins,
                    "n": int(m.sum()),
                    "confidence": float(conf[m].mean()),
                    "accuracy": float(corr[m].mean()),
                }
            )
    return pd.DataFrame(rows, columns=["lo", "hi", "n", "confidence", "accuracy"])


def classification_errors(
    prompts: Sequence[str],
    truth: Sequence[str],
    predicted: Sequence[tuple[str, float]],
    n: int = 10,
) -> pd.DataFrame:
    """The most confident mistakes first: prompt (cut to 160 chars), true and predicted task."""
    frame = pd.DataFrame(
        {
            "prompt": [p[:160].replace("\n", " ") for p in prompts],
            "true": list(truth),
            "predicted": [t for t, _ in predicted],
            "confidence": [float(c) for _, c in predicted],
        }
    )
    wrong = frame[frame["true"] != frame["predicted"]]
    return wrong.sort_values("confidence", ascending=False).head(n).reset_index(drop=True)


# --------------------------------------------------------------------------- routing results


def metrics_table(
    results: Mapping[str, EvalResult], keys: Sequence[str] = ("apgr", "cpt50", "cpt80", "aiq")
) -> pd.DataFrame:
    """Rows = router, columns = (benchmark, metric) for the metrics that exist."""
    data: dict[str, dict[tuple[str, str], float]] = {}
    for name, res in results.items():
        for bench, br in res.benchmarks.items():
            for k in keys:
                if k in br.metrics:
                    data.setdefault(name, {})[(bench, k)] = float(br.metrics[k])
    table = pd.DataFrame.from_dict(data, orient="index")
    if not table.empty:
        table.columns = pd.MultiIndex.from_tuples([tuple(c) for c in table.columns])
        table = table.sort_index(axis=1)
    return table


def anchors_table(paper: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """RouteLLM's published numbers (evals.anchors.paper_anchors()) as one row per router."""
    rows = [{"benchmark": b, **dict(a)} for b, items in paper.items() for a in items]
    return pd.DataFrame(rows)


def route_table(
    router: Any,
    prompts: Sequence[str],
    pool: Sequence[str],
    modes: Sequence[str] = ("quality", "balanced", "cost"),
    tasks: Sequence[str | None] | None = None,
) -> pd.DataFrame:
    """One row per (prompt, optimize mode): the model `router.route` picks and why."""
    rows = []
    for i, p in enumerate(prompts):
        for mode in modes:
            d = router.route([{"role": "user", "content": p}], list(pool), optimize=mode)
            rows.append(
                {
                    "prompt": i,
                    "mode": mode,
                    "model": d.model,
                    "task": d.task,
                    "true_task": None if tasks is None else tasks[i],
                    "confidence": float(d.confidence),
                    "complexity": d.complexity,
                    "complexity_score": float(d.complexity_score),
                }
            )
    return pd.DataFrame(rows)


def route_shares(table: pd.DataFrame, by: str = "task") -> pd.DataFrame:
    """Share of prompts sent to each model, per (mode, `by`) group."""
    counts = table.groupby(["mode", by, "model"]).size().unstack("model", fill_value=0)
    return counts.div(counts.sum(axis=1), axis=0)


def sample_per_group(df: pd.DataFrame, column: str, n: int, seed: int = 0) -> pd.DataFrame:
    """At most `n` seeded rows per value of `column` (rows where it is missing dropped)."""
    rows = df[df[column].notna()].sample(frac=1.0, random_state=seed)
    return rows[rows.groupby(column).cumcount() < n].reset_index(drop=True)
