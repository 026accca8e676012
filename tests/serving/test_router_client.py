"""The gateway's router client follows the registry alias in every worker, busy or not."""

from __future__ import annotations

import logging
import time

import pytest
from flask import Flask

from serving.router_client import build_router
from tests.inferroute.conftest import MESSAGES, POOL, prior_router  # noqa: F401 (fixture)


def test_a_worker_that_has_served_nothing_routes_its_first_request_with_the_new_champion(
    prior_router,  # noqa: F811 (the fixture imported above)
    tmp_path,
    monkeypatch,
    caplog,
):
    """A gunicorn worker builds its router client at boot. The champion is promoted later, while
    this worker has not had a request yet (the kernel gave them all to another worker): its
    first request must already be routed by that champion, not by the router it booted with."""
    mlflow = pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from inferroute.packaging import log_router

    monkeypatch.chdir(tmp_path)  # a server-less sqlite store's artifacts land under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    registry.search_experiments()  # the store exists (empty) before the worker starts

    app = Flask("worker")
    app.config.update(ROUTER_TRACKING_URI=uri, ROUTER_POLL_S=0.2)
    caplog.set_level(logging.INFO, logger="serving.router_client")
    client = build_router(app)
    try:
        mlflow.set_tracking_uri(uri)
        try:
            with mlflow.start_run():
                info = log_router(prior_router, registered_model_name="inferroute")
        finally:
            mlflow.set_tracking_uri(None)
        registry.set_registered_model_alias("inferroute", "champion", info.registered_model_version)

        # no request reaches this client meanwhile: only its own polling can pick the champion up
        deadline = time.monotonic() + 60
        while "-> version 1 loaded" not in caplog.text:
            assert time.monotonic() < deadline, "the idle worker never loaded the new champion"
            time.sleep(0.1)

        decision = client.route(MESSAGES[0], POOL)
        assert decision.router_version.startswith("inferroute/1:")
    finally:
        client.close()
