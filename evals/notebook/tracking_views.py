"""Tracking views for the notebooks: MLflow experiment links, Optuna best params, the registry.

Reads only (the writes are `evals.tracking`, `evals.tuning` and `evals.promote`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)
COLUMNS = ["version", "aliases", "suite_score", "routing_p50_ms", "run_id"]


def mlflow_links(experiments: Sequence[str], ui: str = "http://127.0.0.1:5000") -> pd.DataFrame:
    """Per experiment: its id, run count and the `mlflow ui` URL (missing experiments left out)."""
    from evals import tracking

    mlflow = tracking.setup()
    rows = []
    for name in experiments:
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            continue
        runs = mlflow.search_runs(experiment_ids=[exp.experiment_id], output_format="list")
        url = f"{ui}/#/experiments/{exp.experiment_id}"
        rows.append({"experiment": name, "id": exp.experiment_id, "runs": len(runs), "url": url})
    return pd.DataFrame(rows, columns=["experiment", "id", "runs", "url"])


def best_params(storage: str, study_name: str) -> dict[str, Any]:
    """Best parameters of a finished single-objective study, or {} when there is none yet."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        return dict(study.best_params)
    except (KeyError, ValueError):  # no such study / no completed trial
        return {}


def registry_table(model_name: str = "inferroute") -> pd.DataFrame:
    """Registered versions, newest first: aliases, the gate metrics the versions carry, the run."""
    from mlflow.exceptions import MlflowException

    from evals import promote

    c = promote.client()
    try:
        versions = c.search_model_versions(f"name='{model_name}'")
        aliases = c.get_registered_model(model_name).aliases
    except MlflowException as exc:  # no such registered model yet
        logger.info("no registered model %s: %s", model_name, exc)
        return pd.DataFrame(columns=COLUMNS)
    by_version: dict[str, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(str(v), []).append(alias)
    rows = []
    for mv in versions:
        rows.append(
            {
                "version": int(mv.version),
                "aliases": ",".join(sorted(by_version.get(str(mv.version), []))),
                "suite_score": float(mv.tags.get(promote.SCORE_TAG, "nan")),
                "routing_p50_ms": float(mv.tags.get(promote.P50_TAG, "nan")),
                "run_id": mv.run_id,
            }
        )
    return pd.DataFrame(rows).sort_values("version", ascending=False).reset_index(drop=True)
