"""Save/load and MLflow round trips route exactly like the in-memory router."""

from __future__ import annotations

import pytest

import inferroute
from inferroute import OPTIMIZE_MODES
from tests.inferroute.conftest import MESSAGES, POOL


def _decisions(router):
    out = []
    for messages in MESSAGES:
        for mode in OPTIMIZE_MODES:
            d = router.route(messages, POOL, optimize=mode)
            out.append(
                (
                    d.model,
                    d.task,
                    d.confidence,
                    d.complexity,
                    d.complexity_score,
                    dict(d.candidates),
                    d.router_version,
                    d.trained,
                )
            )
    return out


@pytest.mark.parametrize("name", ["prior", "learned"])
def test_save_load_round_trip(name, prior_router, request, tmp_path):
    router = prior_router if name == "prior" else request.getfixturevalue("tiny_router")
    router.save(str(tmp_path / "r"))
    loaded = inferroute.load_router(str(tmp_path / "r"))
    assert type(loaded) is type(router)
    assert _decisions(loaded) == _decisions(router)


def test_mlflow_round_trip_through_the_registry(tiny_router, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from inferroute.packaging import log_router

    monkeypatch.chdir(tmp_path)  # artifacts of a server-less sqlite store land under ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run():
            info = log_router(tiny_router, registered_model_name="inferroute")
        MlflowClient().set_registered_model_alias(
            "inferroute", "champion", info.registered_model_version
        )
        loaded = inferroute.load_router("models:/inferroute@champion")
        assert _decisions(loaded) == _decisions(tiny_router)
        # the pyfunc flavour routes too (signature + input example were logged)
        import json

        import pandas as pd

        model = mlflow.pyfunc.load_model("models:/inferroute@champion")
        frame = pd.DataFrame(
            {
                "messages": [json.dumps(MESSAGES[0])],
                "pool": [json.dumps(POOL)],
                "optimize": ["quality"],
                "task": [""],
            }
        )
        row = model.predict(frame).iloc[0]
        assert row["model"] == tiny_router.route(MESSAGES[0], POOL, optimize="quality").model
    finally:
        mlflow.set_tracking_uri(None)
