"""How a trained router does on real prompts: complexity against held-out difficulty labels, the
everyday prompts fixture, expected output tokens against held-out answer lengths.

    complexity_metrics(router, experiments.real_prompts(cfg, "test")["difficulty"])
    everyday_metrics(router)                      # tests/fixtures/everyday_prompts.yaml
    length_metrics(router, experiments.real_prompts(cfg, "test")["answers"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from evals.tracking import REPO_ROOT

EVERYDAY_PATH = REPO_ROOT / "tests" / "fixtures" / "everyday_prompts.yaml"


def complexity_metrics(router: Any, difficulty: pd.DataFrame, n_boot: int = 0) -> dict[str, Any]:
    """Spearman rank correlation of `router.complexity` with held-out difficulty labels, overall
    (with a 95% bootstrap interval over the prompts when `n_boot` > 0: `spearman_lo/hi`) and per
    label source (FLASK's five levels, just-eval's three), with how many prompts of each label
    level are called simple / complex."""
    from scipy.stats import spearmanr

    if difficulty.empty:
        return {}
    score = np.asarray(router.complexity(list(difficulty["prompt"].astype(str))), dtype=float)
    label = np.array([router.complexity_label(float(s)) for s in score])
    df = difficulty.assign(score=score, label=label)
    out: dict[str, Any] = {
        "spearman": float(spearmanr(df["score"], df["difficulty"]).statistic),
        "n": len(df),
    }
    if n_boot:
        rng = np.random.default_rng(0)
        y = df["difficulty"].to_numpy(dtype=float)
        draws = [
            spearmanr(score[idx], y[idx]).statistic
            for idx in (rng.integers(0, len(y), len(y)) for _ in range(n_boot))
        ]
        out["spearman_lo"], out["spearman_hi"] = (
            float(v) for v in np.nanpercentile(draws, [2.5, 97.5])
        )
    for name, g in df.groupby("dataset"):
        out[f"spearman.{name}"] = float(spearmanr(g["score"], g["difficulty"]).statistic)
        out[f"n.{name}"] = len(g)
    counts = df.groupby("difficulty_label")["label"].value_counts(normalize=True)
    shares = counts.unstack(fill_value=0)
    out["label_shares"] = {
        str(k): {str(c): round(float(v), 3) for c, v in row.items()} for k, row in shares.iterrows()
    }
    return out


def load_everyday(path: Path = EVERYDAY_PATH) -> pd.DataFrame:
    """The everyday prompts fixture: prompt, task, complexity ("any" = no expectation)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return pd.DataFrame(doc["prompts"])


def everyday_metrics(router: Any, prompts: pd.DataFrame | None = None) -> dict[str, Any]:
    """Task accuracy over the fixture; share of the expected-simple prompts called `simple` and of
    the expected-complex ones called `complex`; the per-prompt predictions."""
    df = load_everyday() if prompts is None else prompts
    texts = list(df["prompt"].astype(str))
    tasks = [t for t, _ in router.classify(texts)]
    labels = [router.complexity_label(float(s)) for s in router.complexity(texts)]
    df = df.assign(pred_task=tasks, pred_complexity=labels)
    simple = df[df["complexity"] == "simple"]
    complex_ = df[df["complexity"] == "complex"]
    return {
        "task_accuracy": float((df["pred_task"] == df["task"]).mean()),
        "simple_called_simple": float((simple["pred_complexity"] == "simple").mean()),
        "complex_called_complex": float((complex_["pred_complexity"] == "complex").mean()),
        "n": len(df),
        "rows": df.to_dict("records"),
    }


def length_metrics(
    router: Any, answers: pd.DataFrame, baselines: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Median |log(expected / actual output tokens)| on held-out answers (per model and prompt),
    for the router's `lengths` and for `baselines` (name -> OutputLengths), with the share within
    a factor of 2. Only answer models the router knows a length for (or a default) are scored."""
    if answers.empty:
        return {}
    prompts = answers["prompt"].astype(str).unique().tolist()
    task_of = dict(zip(prompts, (t for t, _ in router.classify(prompts)), strict=True))
    tasks = answers["prompt"].astype(str).map(task_of)
    actual = answers["output_tokens"].to_numpy(dtype=float)
    out: dict[str, Any] = {"n": len(answers), "models": int(answers["model"].nunique())}
    for name, lengths in {"router": router.lengths, **dict(baselines or {})}.items():
        pred = np.array(
            [lengths.expected(m, t) for m, t in zip(answers["model"], tasks, strict=True)]
        )
        err = np.abs(np.log(pred / actual))
        out[f"{name}.median_abs_log_ratio"] = float(np.median(err))
        out[f"{name}.within_2x"] = float((err <= np.log(2)).mean())
    return out


def constant_lengths(value: float) -> Any:
    """An OutputLengths that always says `value` (the pre-data default, for comparison)."""
    from evals.our_router import OutputLengths

    return OutputLengths(default=value)


def summarise(metrics: Mapping[str, Any], keys: Sequence[str]) -> dict[str, float]:
    return {k: float(metrics[k]) for k in keys if k in metrics}


def task_metrics(router: Any, labels: pd.DataFrame, n_boot: int = 1000) -> dict[str, float]:
    """The task classifier on labelled prompts it never saw (for a router trained on the train
    split: the test split's real user prompts, `experiments.held_out_real_labels`): accuracy,
    macro-F1 over the 15 tasks and ECE as `evals.task_eval` computes them, each with a 95%
    bootstrap interval over the prompts (`*_lo` / `*_hi`)."""
    from evals import task_eval

    labels = labels[labels["task"].notna()]
    if labels.empty:
        return {}
    out = router.classify(list(labels["prompt"].astype(str)))
    pred = task_eval.Predictions(
        list(labels["task"].astype(str)),
        [t for t, _ in out],
        np.array([c for _, c in out], dtype=np.float64),
    )
    row = {f"task_real.{k}": v for k, v in task_eval.scores(pred).items()}
    row["task_real.n"] = float(len(pred.truth))
    if n_boot:
        for k, (lo, hi) in task_eval.bootstrap_interval([pred], n_boot).items():
            row[f"task_real.{k}_lo"], row[f"task_real.{k}_hi"] = lo, hi
    return row


def complex_share(router: Any, n: int = 600) -> float:
    """Share of `n` ShareGPT first turns (evals.traffic's sample) the router calls `complex`."""
    from evals import traffic

    scores = router.complexity(traffic.sharegpt_prompts(n))
    return float(np.mean([router.complexity_label(float(s)) == "complex" for s in scores]))
