"""`pytest --nbmake notebooks/` (make nbtest / make test): the CI parameter set and throw-away stores.

The kernels nbmake starts inherit this process's environment, so it is set here once: the small
fast parameter set (INFERBASE_NB_FAST=1), the repository first on the kernel's import path, and
temporary MLflow / Optuna / gateway homes so a test run never writes into the project's mlflow.db.
Values already in the environment win (point them elsewhere to inspect a CI run).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TMP: list[str] = []


def pytest_configure(config):
    tmp = tempfile.mkdtemp(prefix="inferbase-nbtest-")
    _TMP.append(tmp)
    shared = ROOT.parent / "shared" / "data"
    defaults = {
        "INFERBASE_NB_FAST": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
        "INFERBASE_ARTIFACT_ROOT": f"{tmp}/mlartifacts",
        "INFERBASE_OPTUNA_STORAGE": f"sqlite:///{tmp}/optuna.db",
        "INFERBASE_NB_HOME": f"{tmp}/home",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if shared.is_dir():
        defaults["INFERBASE_DATA_DIR"] = str(shared)
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), path]))


def pytest_unconfigure(config):
    """Stop a gateway / engines notebook 5 left behind (a timed-out kernel never runs atexit)."""
    if str(ROOT) not in sys.path:  # pytest's `pythonpath` may be gone by now (a run cut short)
        sys.path.insert(0, str(ROOT))
    from evals.notebook.gateway import LocalGateway

    home = Path(os.environ["INFERBASE_NB_HOME"]) / "gateway"
    if home.is_dir():
        base = int(os.environ.get("INFERBASE_NB_PORT", "18500")) + 10
        LocalGateway.cleanup(home, int(os.environ.get("INFERBASE_NB_ENGINE_PORT_BASE", base)))
    for tmp in _TMP:
        shutil.rmtree(tmp, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """A whole notebook may take longer than one test (pyproject's pytest-timeout is 600 s)."""
    import pytest

    for item in items:
        item.add_marker(pytest.mark.timeout(1200))
