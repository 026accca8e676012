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


def complexity_metrics(router: Any, difficulty: pd.DataFrame) -> dict[str, Any]:
    """Spearman rank correlation of `router.complexity` with held-out difficulty labels, overall
    and per label source (FLASK's five levels, just-eval's three), with how many prompts of each
    label level are called simple / complex."""
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
