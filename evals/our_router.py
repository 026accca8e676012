"""InferRoute as evals sees it: the only module of `evals` that imports `inferroute` (an
import-linter contract keeps it so). Training, loading, logging to MLflow, the config, the task
taxonomy and the static embedder the baselines share all come through here, so a change to
InferRoute's API has one place to land in evals."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evals import metrics as M
from inferroute.classifier import softmax
from inferroute.costs import CHARS_PER_TOKEN, OutputLengths
from inferroute.features import StaticEmbedder, text_stats
from inferroute.taxonomy import TASK_NAMES
from inferroute.types import ModelCard

__all__ = [
    "CHARS_PER_TOKEN",
    "TASK_NAMES",
    "ModelCard",
    "OutputLengths",
    "QualityView",
    "StaticEmbedder",
    "available",
    "classifier_cv",
    "classifier_metrics",
    "fit_traffic",
    "load",
    "log_router",
    "messages_to_text",
    "router_config",
    "fit_static_blend",
    "fit_task_classifier",
    "fit_task_encoder",
    "is_real",
    "select_labels",
    "softmax",
    "source_digest",
    "task_encoder",
    "text_stats",
    "train",
]

logger = logging.getLogger(__name__)


def available() -> bool:
    try:
        import inferroute
    except ImportError:
        return False
    return hasattr(inferroute, "train") and hasattr(inferroute, "load_router")


def router_config(overrides: Mapping[str, Any] | None = None) -> Any:
    """InferRoute's RouterConfig (defaults from its YAML) with type-checked overrides."""
    from inferroute import RouterConfig

    base = RouterConfig.from_yaml() if hasattr(RouterConfig, "from_yaml") else RouterConfig()
    return base.with_overrides(**dict(overrides or {}))


def train(
    scores: pd.DataFrame,
    labels: pd.DataFrame,
    overrides: Mapping[str, Any] | None,
    real: Mapping[str, pd.DataFrame] | None = None,
) -> Any:
    """`real`: the real-prompt tables (`difficulty`, `answers`) of
    `evals.experiments.real_prompts`."""
    import inferroute

    config = router_config(overrides)
    t0, c0 = time.perf_counter(), time.process_time()
    encoder = task_encoder(labels, config)
    spent = (time.perf_counter() - t0, time.process_time() - c0)
    router = inferroute.train(scores, labels, config, task_encoder=encoder, **dict(real or {}))
    if encoder is not None:  # fine-tuned (or read from the cache) here, not in the stage itself
        router.train_timings["task encoder"] = spent
    return router


def fit_task_encoder(
    labels: pd.DataFrame, config: Any, progress: bool = True, **kwargs: Any
) -> Any:
    """`inferroute.training.fit_task_encoder`: InferRoute's fine-tuned MiniLM task classifier."""
    from inferroute.training import fit_task_encoder as fit

    return fit(labels, config, progress=progress, **kwargs)


def task_encoder(labels: pd.DataFrame, config: Any) -> Any:
    """The task encoder `inferroute.train` would fine-tune on these labels with this config (None
    when config.task_encoder is off), kept on disk under $INFERBASE_HOME/cache/task-encoder/<key>.
    The key hashes the prompts, tasks and real flags it is fine-tuned on, its settings, the torch
    version and inferroute/encoder.py, so repeated trainings on the same labels (`evals train`
    again, tests, notebooks, a quick `--max-train` run) fine-tune once."""
    import dataclasses
    import json
    import shutil
    from importlib.metadata import version

    import inferroute.encoder as E
    from evals.embeddings import inferbase_home
    from inferroute.training import encoder_labels

    if not config.task_encoder:
        return None
    texts, tasks, real = encoder_labels(labels, config)
    h = hashlib.sha256()
    settings = dataclasses.asdict(config.encoder_settings())
    h.update(json.dumps([texts, tasks, real.tolist(), settings, version("torch")]).encode())
    h.update(Path(E.__file__).read_bytes())
    path = inferbase_home() / "cache" / "task-encoder" / h.hexdigest()[:16]
    meta_file = path / "encoder.json"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            return E.TaskEncoder.load(path, meta, threads=config.enc_threads)
        except Exception as exc:  # noqa: BLE001 - a broken cache entry is fine-tuned again
            logger.warning("cached task encoder at %s unreadable (%s); fine-tuning", path, exc)
    encoder = fit_task_encoder(labels, config)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = encoder.save(tmp)
    (tmp / "encoder.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.rmtree(path, ignore_errors=True)
    tmp.replace(path)
    return encoder


def messages_to_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text InferRoute reads from a request's messages (every user turn)."""
    from inferroute.policy import messages_to_text as to_text

    return to_text(messages)[0]


def fit_traffic(
    router: Any, prefs: pd.DataFrame, cards: Mapping[str, ModelCard] | None = None
) -> Any:
    """`router` with InferRoute's traffic preference term (a Bradley-Terry residual on the pool's
    own model ids) fitted on a preference table (evals.datasets.traffic_log.preferences)."""
    from inferroute.training import fit_preferences

    return fit_preferences(router, prefs, cards)


def load(uri: str) -> Any:
    import inferroute

    return inferroute.load_router(uri)


def log_router(router: Any, registered_model_name: str) -> Any:
    """Log the router as an MLflow pyfunc model in the active run and register it (ModelInfo)."""
    from inferroute import packaging

    return packaging.log_router(router, name="router", registered_model_name=registered_model_name)


def source_digest() -> str:
    """A short hash of InferRoute's source: a saved router is reusable only with the same code."""
    import inferroute

    h = hashlib.sha1()
    for path in sorted(Path(inferroute.__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


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


def classifier_cv(
    router: Any, labels: pd.DataFrame, folds: int = 5, max_per_class: int = 600, seed: int = 0
) -> dict[str, Any]:
    """Stratified k-fold cross-validation of the router's task classifier recipe on labelled
    prompts: every prompt is predicted once by a classifier that did not see it, so rare task types
    get a test support of all their prompts instead of the 1-3 a 15% hash split leaves them.

    The classifier is refitted on each fold's training part with the router's own features and
    config (the embedder is the trained router's, fixed). Frequent classes are capped at
    `max_per_class` prompts (seeded sample) to bound the fitting time; rare classes keep every
    prompt. A class with fewer prompts than folds is still predicted, in the folds it falls in.
    """
    if not hasattr(router, "features") or not hasattr(router, "classifier"):
        return {}
    from sklearn.model_selection import StratifiedKFold

    from inferroute.classifier import TaskClassifier

    labels = labels[labels["task"].notna()].sample(frac=1.0, random_state=seed)
    labels = labels[labels.groupby("task").cumcount() < max_per_class].reset_index(drop=True)
    texts = labels["prompt"].astype(str).tolist()
    truth = labels["task"].astype(str).to_numpy()
    _, dense = router.features(texts)
    cfg = router.config
    counts = pd.Series(truth).value_counts()
    strata = np.where(pd.Series(truth).map(counts).to_numpy() >= folds, truth, "_rare")
    pred = np.empty(len(truth), dtype=object)
    conf = np.zeros(len(truth))
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(
        texts, strata
    ):
        clf = TaskClassifier.fit(
            dense[train_idx],
            [texts[i] for i in train_idx],
            truth[train_idx].tolist(),
            **cfg.classifier_kwargs(),
        )
        p = clf.predict_proba(dense[test_idx], [texts[i] for i in test_idx])
        pred[test_idx] = [TASK_NAMES[j] for j in p.argmax(1)]
        conf[test_idx] = p.max(1)
    pred_l = [str(x) for x in pred]
    names = sorted(set(truth))
    correct = (np.asarray(pred_l) == truth).astype(np.float64)
    return {
        "macro_f1": M.macro_f1(list(truth), pred_l, names),
        "accuracy": float(correct.mean()),
        "ece": M.ece(conf, correct),
        "n": len(truth),
        "folds": folds,
        "max_per_class": max_per_class,
        "per_class": M.per_class_f1(list(truth), pred_l, names),
    }


class QualityView:
    """Any router as a harness predictor (`predict_quality`), named for the tables."""

    def __init__(self, router: Any) -> None:
        self.router = router

    def predict_quality(self, prompts: Sequence[str], models: Sequence[str]) -> np.ndarray:
        return np.asarray(self.router.predict_quality(list(prompts), list(models)), dtype=float)


def fit_task_classifier(*args: Any, **kwargs: Any) -> Any:
    """`inferroute.training.fit_task_classifier` (the recipe `train` uses), for evals.task_eval."""
    from inferroute.training import fit_task_classifier as fit

    return fit(*args, **kwargs)


def fit_static_blend(*args: Any, **kwargs: Any) -> Any:
    """`inferroute.training.fit_static_blend`: the task encoder with the static classifier
    blended in, as `train` serves it."""
    from inferroute.training import fit_static_blend as fit

    return fit(*args, **kwargs)


def select_labels(labels: pd.DataFrame, config: Any) -> pd.DataFrame:
    """`inferroute.training.select_labels`: the labelled prompts the classifier trains on."""
    from inferroute.training import select_labels as select

    out: pd.DataFrame = select(labels, config)
    return out


def is_real(labels: pd.DataFrame, config: Any) -> Any:
    """`inferroute.training.is_real`: which labelled prompts are real user prompts."""
    from inferroute.training import is_real as real

    return real(labels, config)
