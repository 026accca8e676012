"""The suite is hermetic (tests/conftest.py): `make serve` then `make test` in one clone passes,
and the test run leaves the store `make serve` trained into as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import project_store
from tests.conftest import KEEP

REPO = project_store.REPO


def test_a_test_sees_none_of_the_users_stores(tmp_path: Path):
    import mlflow

    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert uri.startswith("sqlite:///") and str(REPO / "mlflow.db") not in uri
    assert mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri
    assert not Path(os.environ["INFERBASE_ARTIFACT_ROOT"]).is_relative_to(REPO)
    assert not Path(os.environ["INFERBASE_HOME"]).is_relative_to(REPO)
    leaked = [
        k
        for k in os.environ
        if k.startswith("INFERBASE_") and k not in KEEP and not k.startswith("INFERBASE_TEST_")
    ]
    assert set(leaked) <= {"INFERBASE_HOME", "INFERBASE_ARTIFACT_ROOT", "INFERBASE_OPTUNA_STORAGE",
                           "INFERBASE_NB_HOME"}  # fmt: skip


def test_a_store_set_by_one_test_is_not_the_next_ones(tmp_path: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mine.db'}")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'mine.db'}")  # sets MLFLOW_REGISTRY_URI too


def test_the_next_test_gets_its_own_store_again():
    import mlflow

    assert "mine.db" not in mlflow.get_tracking_uri() + mlflow.get_registry_uri()
    assert "MLFLOW_REGISTRY_URI" not in os.environ


def test_make_serve_then_make_test(tmp_path: Path):
    """The README's order on one clone: a user store with a champion (what `make serve` leaves)
    and an environment pointing at it and at a user database; the tests that read the champion
    (an app built without a router loads `@champion`; bootstrap with no champion) pass, and the
    store is left byte for byte as it was."""
    store, artifacts = tmp_path / "user-mlflow.db", tmp_path / "user-mlartifacts"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "INFERBASE_"))}
    env["PYTHONPATH"] = str(REPO)
    seeded = subprocess.run(
        [sys.executable, "-m", "tests.project_store", "seed", str(store), str(artifacts)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    before = project_store.fingerprint(store, artifacts)
    assert any("MLmodel" in path for path in before)
    user = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
        "MLFLOW_REGISTRY_URI": f"sqlite:///{store}",
        "INFERBASE_ARTIFACT_ROOT": str(artifacts),
        "INFERBASE_HOME": str(tmp_path / "user-home"),
        "INFERBASE_DATABASE_URL": f"sqlite:///{tmp_path / 'user.db'}",
        "INFERBASE_DATA_DIR": os.environ.get("INFERBASE_DATA_DIR", str(tmp_path / "none")),
    }
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/serving/test_factory.py",
         "tests/evals/test_cli.py::test_bootstrap_without_data_dir_exits_zero"],
        cwd=REPO, env={**env, **user}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert project_store.fingerprint(store, artifacts) == before
    assert not (tmp_path / "user-home").exists() and not (tmp_path / "user.db").exists()
