"""Hermetic tests, whatever the environment exports.

`make` exports MLFLOW_TRACKING_URI=sqlite:///<repo>/mlflow.db (the store `make serve` trains into)
and a user may export INFERBASE_* (database, Redis, home, engine ports). None of it reaches a test:

- at start-up (this module's import, before other conftests and test modules) every INFERBASE_*
  variable is dropped except the test suite's own (`KEEP`), MLflow's store variables are dropped,
  and the session gets a throw-away home: gateway HOME and engine run directory (INFERBASE_HOME),
  MLflow store and artifacts, Optuna storage. Subprocesses a test starts inherit that;
- each test gets an MLflow store and artifact folder of its own, and MLflow's process-wide tracking
  and registry URIs (which `mlflow.set_*_uri` also writes into os.environ) are reset after it;
- the session fails when the project's own MLflow store (`tests.project_store`) changed during the
  run, or when a test created the gateway's default HOME (`<repo>/instance`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import project_store

KEEP = {"INFERBASE_DATA_DIR", "INFERBASE_REQUIRE_POSTGRES"}  # and INFERBASE_TEST_*
MLFLOW_DROP = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME",
               "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")  # fmt: skip
_project_before = pytest.StashKey[dict[str, str]]()
_session_tmp = pytest.StashKey[Path]()


def hermetic_environ(environ: dict[str, str] | os._Environ[str], tmp: Path) -> None:
    """Drop what would point a test at a user's stores; point the session at `tmp` instead."""
    for name in list(environ):
        if name.startswith("INFERBASE_") and not (
            name in KEEP or name.startswith("INFERBASE_TEST_")
        ):
            del environ[name]
    for name in MLFLOW_DROP:
        environ.pop(name, None)
    environ.update(
        {
            "INFERBASE_HOME": str(tmp / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
            "INFERBASE_ARTIFACT_ROOT": str(tmp / "mlartifacts"),
            "INFERBASE_OPTUNA_STORAGE": f"sqlite:///{tmp / 'optuna.db'}",
            "INFERBASE_NB_HOME": str(tmp / "nb"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )


# At import: this conftest is loaded before the other conftests and every test module.
_PROJECT_BEFORE = project_store.fingerprint()
_INSTANCE = project_store.REPO / "instance"  # the gateway's default HOME (`make serve`'s)
_INSTANCE_BEFORE = _INSTANCE.exists()
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="inferbase-tests-"))
hermetic_environ(os.environ, _SESSION_TMP)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_project_before] = _PROJECT_BEFORE
    config.stash[_session_tmp] = _SESSION_TMP


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_project_before, None)
    if before is None:
        return
    after = project_store.fingerprint()
    if not _INSTANCE_BEFORE and _INSTANCE.exists():
        after["instance/ (created)"] = "a test wrote into the gateway's default HOME"
    if after != before:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "the project's stores changed during the tests", red=True)
            for path in changed[:20]:
                reporter.write_line(f"  {path}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    tmp = config.stash.get(_session_tmp, None)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def _reset_mlflow() -> None:
    """MLflow keeps the tracking and registry URI in module globals (and copies them into
    os.environ): a test that set them must not hand them to the next."""
    if "mlflow" not in sys.modules:
        return
    import mlflow

    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  (None resets to the environment)
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture(autouse=True)
def _own_mlflow_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Each test: an MLflow store and artifact folder of its own (created when first used)."""
    store = tmp_path_factory.mktemp("mlflow-store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.setenv("INFERBASE_ARTIFACT_ROOT", str(store / "mlartifacts"))
    # the session's home again when a test dropped it (else the gateway's default HOME,
    # <repo>/instance, the one `make serve` uses, would be next); a home a fixture set stays (the
    # vLLM tests' module fixture starts its engines under a home of its own)
    if not os.environ.get("INFERBASE_HOME"):
        monkeypatch.setenv("INFERBASE_HOME", str(_SESSION_TMP / "home"))
    yield store
    _reset_mlflow()


@pytest.fixture(autouse=True)
def _no_leaked_app_context() -> Iterator[None]:
    """Pop the Flask app contexts a test left pushed. A lean stream keeps its request's app context
    until the WSGI server closes the response (`serving.front._Stream`); a test client response that
    is never closed leaves it on this thread, and then `flask.cli.with_appcontext` runs the next
    test's CLI command in that old app (its database: "No account ..." in the full-suite run)."""
    yield
    from flask.globals import _cv_app

    while (ctx := _cv_app.get(None)) is not None:
        try:
            ctx.pop()
        except Exception:  # pushed in another context: nothing this thread can undo
            break
