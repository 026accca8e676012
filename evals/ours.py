"""The only place evals calls InferRoute's own API (inferroute.train, load_router, config)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evals import metrics as M

logger = logging.getLogger(__name__)


def available() -> bool:
    try:
        import inferroute
    except ImportError:
        return False
    return hasattr(inferroute, "train") and hasattr(inferroute, "load_router")


def router_config(overrides: Mapping[str, Any] | None = None) -> Any:
    """InferRoute's RouterConfig (defaults from its YAML) with type-checked overrides."""
    from inferroute.config import RouterConfig

    base = RouterConfig.from_yaml() if hasattr(RouterConfig, "from_yaml") else RouterConfig()
    return base.with_overrides(**dict(overrides or {}))


def train(scores: pd.DataFrame, labels: pd.DataFrame, overrides: Mapping[str, Any] | None) -> Any:
    import inferroute

    return inferroute.train(scores, labels, router_config(overrides))


def load(uri: str) -> Any:
    import inferroute

    return inferroute.load_router(uri)


def classifier_metrics(router: Any, labels: pd.DataFrame) -> dict[str, Any]:
    """Macro-F1, ECE and the confusion matrix of `router.classify` on labelled prompts."""
    labels = labels[labels["task"].notna()]
    if labels.empty or not hasattr(router, "classify"):
        return {}
    out = router.classify(list(labels["prompt"]))
    pred = [t for t, _ in out]
    conf = np.array([c for _, c in out], dtype=np.float64)
    truth = list(labels["task"].astype(str))
    names = sorted(set(truth) | set(pred))
    correct = np.array([p == t for p, t in zip(pred, truth, strict=True)], dtype=np.float64)
    return {
        "macro_f1": M.macro_f1(truth, pred, names),
        "accuracy": float(correct.mean()),
        "ece": M.ece(conf, correct),
        "n": len(truth),
        "labels": names,
        "confusion": M.confusion_matrix(truth, pred, names).tolist(),
    }


class QualityView:
    """Any router as a harness predictor (`predict_quality`), named for the tables."""

    def __init__(self, router: Any) -> None:
        self.router = router

    def predict_quality(self, prompts: Sequence[str], models: Sequence[str]) -> np.ndarray:
        return np.asarray(self.router.predict_quality(list(prompts), list(models)), dtype=float)
