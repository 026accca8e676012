"""Point the dataset loaders at the shared data directory unless INFERBASE_DATA_DIR is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

if "INFERBASE_DATA_DIR" not in os.environ and SHARED.is_dir():
    os.environ["INFERBASE_DATA_DIR"] = str(SHARED)


@pytest.fixture(scope="session")
def data_root() -> Path:
    value = os.environ.get("INFERBASE_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("no shared data directory (set INFERBASE_DATA_DIR)")
    return Path(value)


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


@pytest.fixture(scope="session")
def rb_slice(data_root):
    """300 seeded RouterBench 0-shot prompts x 11 models (with costs), split 65/0/35 by prompt."""
    import numpy as np

    from evals import datasets as D

    df = D.load("routerbench_zs")
    ids = np.sort(df["prompt_id"].unique())
    pick = np.random.default_rng(0).choice(ids, size=300, replace=False)
    df = df[df["prompt_id"].isin(set(pick))].copy()
    split = D.split_by_prompt(df, seed=0, frac=(0.65, 0.0, 0.35))
    df["split"] = df["prompt_id"].map(split)
    from evals import embeddings

    # the quick static embedder (MiniLM input embeddings, IDF-weighted): seconds, not minutes
    embeddings.use_static(df["prompt"].unique().tolist(), source="input")
    return df


REPO = Path(__file__).resolve().parents[2]
# what the trained router depends on: a change to any of these retrains it
ROUTER_INPUTS = ("inferroute/*.py", "evals/datasets/*.py", "evals/experiments.py", "evals/suite.py",
                 "evals/our_router.py", "evals/configs/*.yaml", "data/*.yaml")  # fmt: skip


def _router_cache_key(data: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for pattern in ROUTER_INPUTS:
        for path in sorted(REPO.glob(pattern)):
            h.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    manifest = data / "MANIFEST.md"
    h.update(manifest.read_bytes() if manifest.is_file() else b"")
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def trained_router(data_root):
    """The router `python -m evals train` trains with the default config and all shared data
    (`evals.experiments.train_router`), trained once and kept on disk under INFERBASE_TEST_CACHE
    (default <repo>/.cache/test-router/<key>), keyed by the code and data it depends on."""
    import shutil

    import inferroute
    from evals import experiments
    from evals.suite import SuiteConfig

    root = Path(os.environ.get("INFERBASE_TEST_CACHE", REPO / ".cache" / "test-router"))
    path = root / _router_cache_key(data_root)
    if (path / "router.json").is_file():
        return inferroute.load_router(path)
    router = experiments.train_router(SuiteConfig.load())
    tmp = root / f"{path.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    router.save(str(tmp))
    tmp.replace(path)
    return router


@pytest.fixture(scope="session")
def tiny_router(data_root):
    """A small router (inferroute.config.TINY on RouterBench 0-shot + RouteLLM GSM8K, every task
    label), trained once and kept on disk beside `trained_router`'s, keyed the same way."""
    import shutil

    import pandas as pd

    import inferroute
    from evals import datasets as D
    from inferroute.config import TINY

    root = Path(os.environ.get("INFERBASE_TEST_CACHE", REPO / ".cache" / "test-router"))
    path = root / f"tiny-{_router_cache_key(data_root)}"
    if (path / "router.json").is_file():
        return inferroute.load_router(path)
    scores = pd.concat([D.load("routerbench_zs"), D.load("routellm_gsm8k")], ignore_index=True)
    router = inferroute.train(scores, D.load_task_labels(), TINY)
    tmp = root / f"{path.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    router.save(str(tmp))
    tmp.replace(path)
    return router
