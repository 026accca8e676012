"""MLflow tracking: the only module that calls `mlflow.log_*`.

Where things go:
- Tracking and registry store: `MLFLOW_TRACKING_URI`, default `sqlite:///mlflow.db` (relative to the
  working directory, which is the repository root for `make` and `python -m evals`).
- Artifacts: each experiment is created with an explicit artifact location under the repository,
  `<repo>/mlartifacts/<experiment>`. Without it a `sqlite:` store with no server writes to
  `./mlruns` of whatever directory the process ran in, so artifacts would scatter. MLflow records
  that location as an absolute path (STACK.md): moving the checkout breaks loading old artifacts;
  for a portable store run `mlflow server --artifacts-destination ./mlartifacts` and point
  MLFLOW_TRACKING_URI at it (experiments created through a server get `mlflow-artifacts:` URIs).
  `INFERBASE_ARTIFACT_ROOT` overrides the folder.
Every run logs its full flat config as params, the git commit, the dataset versions, metrics, and
plots as artifacts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_METRIC_BAD = re.compile(r"[^A-Za-z0-9_\-./ ]")  # characters MLflow refuses in metric names


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)


def artifact_root() -> Path:
    return Path(os.environ.get("INFERBASE_ARTIFACT_ROOT", REPO_ROOT / "mlartifacts")).resolve()


def setup() -> Any:
    """Point mlflow at the configured store and return the module."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        sha = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return f"{sha}{'-dirty' if dirty else ''}" if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def experiment_id(name: str) -> str:
    mlflow = setup()
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    uri = tracking_uri()
    location = None
    if not uri.startswith(("http://", "https://")):  # a server picks its own artifact destination
        location = (artifact_root() / name).as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location))


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _flat("", config, out)
    return out


@contextlib.contextmanager
def run(
    experiment: str,
    run_name: str,
    config: Mapping[str, Any],
    *,
    dataset_versions: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    nested: bool = False,
) -> Iterator[Any]:
    """Start a run that logs config, git commit and dataset versions; yields the mlflow run."""
    mlflow = setup()
    exp_id = experiment_id(experiment)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, nested=nested) as active:
        params = {k: ("" if v is None else v) for k, v in flatten(config).items()}
        for start in range(0, len(params), 100):
            chunk = dict(list(params.items())[start : start + 100])
            mlflow.log_params({k: str(v)[:6000] for k, v in chunk.items()})
        all_tags = {"git_commit": git_commit(), **(tags or {})}
        for name, version in (dataset_versions or {}).items():
            all_tags[f"dataset_version.{name}"] = version
        mlflow.set_tags(all_tags)
        yield active


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    mlflow = setup()
    clean = {_METRIC_BAD.sub("_", k): float(v) for k, v in metrics.items()}
    mlflow.log_metrics(clean, step=step)


def log_figure(fig: Figure, artifact_file: str) -> None:
    """Log an `evals.figures` figure (pyplot-free: nothing to close)."""
    setup().log_figure(fig, artifact_file)


def log_json(obj: Any, artifact_file: str) -> None:
    setup().log_dict(obj, artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    setup().log_text(text, artifact_file)


def load_json_artifact(run_id: str, artifact_file: str) -> Any:
    mlflow = setup()
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_file, dst_path=tmp
        )
        return json.loads(Path(path).read_text(encoding="utf-8"))


def latest_run(experiment: str, filter_string: str = "") -> Any | None:
    """The most recent finished run of an experiment (optionally filtered), or None."""
    mlflow = setup()
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return None
    cond = "attributes.status = 'FINISHED'" + (f" and {filter_string}" if filter_string else "")
    runs = mlflow.search_runs(
        experiment_ids=[exp.experiment_id],
        filter_string=cond,
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0] if runs else None
