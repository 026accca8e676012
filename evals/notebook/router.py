"""The suite data and a trained InferRoute for the notebooks, trained once and reused.

Training is the slow step every notebook shares (task classifier, quality model, complexity), so
`trained_router` keeps the saved router on disk keyed by everything that decides it: the suite
(datasets, their content versions, cap, split seed), the config overrides and the source of the
`inferroute` package. A change to any of them trains anew. The cache lives in
`$INFERBASE_NB_HOME/routers` (CI: a temporary folder) or `~/.cache/inferbase/notebook-routers`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evals import experiments, our_router
from evals.suite import SuiteConfig, load_suite, train_frame

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuiteData:
    cfg: SuiteConfig
    df: pd.DataFrame  # the long score table with a split column
    versions: Mapping[str, str]  # dataset -> content hash
    train_df: pd.DataFrame  # train-split rows of the training datasets, capped
    labels: pd.DataFrame  # task-labelled prompts of the train split


def suite_data(cfg: SuiteConfig) -> SuiteData:
    df, versions = load_suite(cfg)
    return SuiteData(
        cfg, df, versions, train_frame(df, cfg), experiments.labels_split(cfg, "train")
    )


def cache_dir() -> Path:
    home = os.environ.get("INFERBASE_NB_HOME")
    if home:
        return Path(home) / "routers"
    return Path.home() / ".cache" / "inferbase" / "notebook-routers"


def router_key(data: SuiteData, overrides: Mapping[str, Any] | None) -> str:
    cfg = data.cfg
    blob = {
        "train_datasets": list(cfg.train_datasets),
        "held_out": sorted(cfg.held_out()),
        "versions": dict(sorted(data.versions.items())),
        "cap": cfg.max_train_prompts_per_dataset,
        "seed": cfg.split_seed,
        "overrides": dict(sorted((overrides or {}).items())),
        "code": our_router.source_digest(),
    }
    return hashlib.sha1(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train(data: SuiteData, overrides: Mapping[str, Any] | None = None) -> Any:
    """Train InferRoute on the suite's train split (no cache), as `evals train` does."""
    return our_router.train(
        data.train_df, data.labels, overrides, experiments.real_prompts(data.cfg, "train")
    )


def trained_router(
    data: SuiteData, overrides: Mapping[str, Any] | None = None, *, cache: bool = True
) -> Any:
    """A trained router for these data and overrides: from the cache, or trained and saved."""
    if not cache:
        return train(data, overrides)
    path = cache_dir() / router_key(data, overrides)
    if (path / ".complete").exists():
        try:
            return our_router.load(str(path))
        except Exception as exc:  # noqa: BLE001 - a stale or broken cache entry is retrained
            logger.warning("cached router at %s unreadable (%s); training again", path, exc)
    router = train(data, overrides)
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    router.save(str(path))
    (path / ".complete").touch()
    return router


def register(
    data: SuiteData,
    router: Any,
    overrides: Mapping[str, Any] | None = None,
    promotion: Any | None = None,
    run_name: str = "notebook",
) -> dict[str, Any]:
    """What `evals.experiments.train` logs and registers, for a router already trained (or cached).

    Judges it on the validation split, logs config + metrics to the training experiment, registers
    it with its gate metrics; returns run id, version and the gate metrics.
    """
    from evals import promote, tracking

    params = experiments.train_params(data.cfg, overrides)
    tags = {"evals.kind": "train", "evals.source": run_name}
    with tracking.run(
        experiments.TRAIN_EXPERIMENT, run_name, params, dataset_versions=data.versions, tags=tags
    ) as active:
        res, gate_metrics = experiments.validate_router(router, data.df, data.cfg.on_split("val"))
        tracking.log_metrics({**res.flat_metrics(), **gate_metrics})
        version = promote.register_router(
            router,
            gate_metrics,
            promotion or promote.PromotionConfig(),
            dataset_version=",".join(f"{k}={v}" for k, v in sorted(data.versions.items())),
            run_id=active.info.run_id,
        )
    return {"run_id": active.info.run_id, "version": version, **gate_metrics}


TRAFFIC_DEMO_MODEL = "inferroute-traffic-demo"


def fresh_registered_model(name: str) -> bool:
    """Delete the registered model `name` with its versions, if it exists (True: it did).

    For a demo that owns its registered model (notebook 6 registers routers trained on synthetic
    traffic under `TRAFFIC_DEMO_MODEL`): each run starts from an empty registry entry, so its gate
    compares what this run trained and a re-run behaves as the first one did. Runs stay tracked.
    """
    from mlflow.exceptions import MlflowException

    from evals import promote

    c = promote.client()
    try:
        c.get_registered_model(name)
    except MlflowException:
        return False
    c.delete_registered_model(name)
    logger.info("deleted registered model %s (a fresh demo run)", name)
    return True


def router_space(trial: Any) -> dict[str, Any]:
    """InferRoute's quality-model and classifier hyperparameters (RouterConfig keys) for Optuna:
    `evals.tuning.router_space` (joint latent model, its blend with kNN, classifier C) plus the
    kNN estimate's own knobs, which matter when the blend gives kNN some weight. (Not through
    `tuning.SPACES["router"]`: notebook 4 puts this function there.)"""
    from evals import tuning

    return {
        **tuning.router_space(trial),
        "knn_k": trial.suggest_int("knn_k", 10, 200, log=True),
        "knn_power": trial.suggest_float("knn_power", 1.0, 8.0),
        "knn_kappa": trial.suggest_float("knn_kappa", 0.01, 1.0, log=True),
        "prior_shrink": trial.suggest_float("prior_shrink", 1.0, 100.0, log=True),
    }
