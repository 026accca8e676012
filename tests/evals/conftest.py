"""Shared fixtures: a temporary MLflow store and embedding cache per test session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A fresh sqlite tracking/registry store with artifacts in tmp_path."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("INFERBASE_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return tmp_path


@pytest.fixture(scope="session", autouse=True)
def _offline_home(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "INFERBASE_HOME" not in os.environ:  # keep the user's embedding cache out of tests
        os.environ["INFERBASE_HOME"] = str(tmp_path_factory.mktemp("inferbase_home"))
