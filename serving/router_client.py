"""The only module of `serving` that imports `inferroute` (an import-linter contract keeps it so,
the fake router in `serving.testing` aside): loads the promoted router and polls it, and passes
the library's types and the optimize modes (`OPTIMIZE`) on to the rest of serving.

`build_router(app)` returns a `RouterClient`: it routes with the router the MLflow registry's alias
points at (`models:/inferroute@champion` by default) and polls that alias in a background thread.
When the alias moves, the new version is loaded off the request path and swapped in with one
reference assignment, so requests in flight finish on the router they started with. With no champion
(or no reachable registry) it routes with the untrained catalog-prior router and says so
(`decision.trained is False`, `GET /models` -> `router.trained`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask

from inferroute import (
    OPTIMIZE,
    OPTIMIZE_MODES,
    LiveStats,
    ModelCard,
    OptimizeMode,
    PriorRouter,
    RouteDecision,
    Router,
    load_router,
)
from serving.config import REPO_ROOT
from serving.engines.base import CatalogModel, Engines

__all__ = [
    "OPTIMIZE",
    "OPTIMIZE_MODES",
    "LiveStats",
    "LoadedRouter",
    "ModelCard",
    "OptimizeMode",
    "RouteDecision",
    "RouterClient",
    "build_router",
    "live_stats",
    "to_card",
]

logger = logging.getLogger(__name__)

# MLflow warns (in red, at every start) when it first meets `RouterModel.predict`'s `model_input`
# hint: pyfunc's schema validation cannot use it. The gateway never calls `predict` (it routes with
# the unwrapped Router), so that one warning is dropped while the router loads; every other warning
# is shown as usual. (A filter cannot do it: MLflow sets its own "once" filter around the check.)
# The cause is in inferroute/packaging.py: `model_input` annotated as a pandas DataFrame (resolvable
# when the class is defined), a hint MLflow accepts, would silence it at the source.
_MLFLOW_TYPE_HINT = re.compile(r"(\x1b\[\d+m)?Type hint used in the model's predict function")


@dataclass(frozen=True, slots=True)
class LoadedRouter:
    router: Router
    version: str | None  # registry version; None for the prior router
    uri: str | None
    loaded_at: float

    @property
    def trained(self) -> bool:
        return self.version is not None


class RouterClient:
    """Routes with the current champion; swaps to a new one when the alias moves."""

    def __init__(
        self,
        *,
        tracking_uri: str | None,
        model_name: str = "inferroute",
        alias: str = "champion",
        poll_s: float = 30.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.alias = alias
        self.poll_s = poll_s
        self._current = LoadedRouter(PriorRouter({}), None, None, time.time())
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self._stop = threading.Event()

    # -- routing ------------------------------------------------------------------------------
    @property
    def current(self) -> LoadedRouter:
        self.start_polling()
        return self._current

    def route(
        self,
        messages: Sequence[Mapping[str, Any]],
        pool: Sequence[str],
        *,
        optimize: str = "balanced",
        task: str | None = None,
        cards: Sequence[ModelCard] | Mapping[str, ModelCard] | None = None,
        live: Mapping[str, LiveStats] | None = None,
    ) -> RouteDecision:
        if cards is not None and not isinstance(cards, Mapping):
            cards = {c.id: c for c in cards}
        loaded = self.current  # one read: a swap during this request does not affect it
        decision = loaded.router.route(
            list(messages), list(pool), optimize=optimize, task=task, cards=cards, live=live
        )
        if loaded.version is None:
            return decision
        # name the registry version too, so a usage row says exactly which champion routed it
        version = f"{self.model_name}/{loaded.version}:{decision.router_version}"
        return dataclasses.replace(decision, router_version=version)

    def info(self) -> dict[str, Any]:
        cur = self.current
        return {
            "name": self.model_name,
            "alias": self.alias,
            "version": cur.version,
            "trained": cur.trained,
            "router_version": cur.router.version,
        }

    # -- champion tracking --------------------------------------------------------------------
    def champion_version(self) -> str | None:
        """The registry version the alias points at, or None (no alias, no registry)."""
        if not self.tracking_uri:
            return None
        if self.tracking_uri.startswith("sqlite:///"):
            path = self.tracking_uri.removeprefix("sqlite:///")
            if not os.path.exists(path):  # no store yet: nothing was ever promoted (create none)
                return None
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            mv = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            return str(mv.get_model_version_by_alias(self.model_name, self.alias).version)
        except MlflowException:
            return None

    def refresh(self) -> bool:
        """Load the champion if the alias moved. Returns True when a new router was swapped in."""
        with self._lock:
            version = self.champion_version()
            if version is None or version == self._current.version:
                return False
            uri = f"models:/{self.model_name}/{version}"
            t0 = time.perf_counter()
            router = self._load(uri)
            self._current = LoadedRouter(router, version, uri, time.time())
            logger.info(
                "router %s@%s -> version %s loaded in %.0f ms",
                self.model_name,
                self.alias,
                version,
                (time.perf_counter() - t0) * 1000,
            )
            return True

    def _load(self, uri: str) -> Router:
        import mlflow

        if self.tracking_uri:  # set whenever there is a champion to load
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
        with warnings.catch_warnings(record=True) as caught:
            router = load_router(uri)
        for w in caught:
            if not _MLFLOW_TYPE_HINT.match(str(w.message)):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        return router

    def start_polling(self) -> None:
        """Poll the alias in a background thread of this process (once per process: a client
        built before a fork starts its own thread in the child at its first request)."""
        if self.poll_s <= 0 or (self._thread is not None and self._thread_pid == os.getpid()):
            return
        with self._lock:
            if self._thread is not None and self._thread_pid == os.getpid():
                return
            self._thread_pid = os.getpid()
            self._thread = threading.Thread(target=self._poll, name="router-poll", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # a broken candidate must never take the serving router down
                logger.exception("loading the %s@%s router failed", self.model_name, self.alias)
            self._stop.wait(self.poll_s)

    def close(self) -> None:
        self._stop.set()


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"


def build_router(app: Flask) -> RouterClient:
    cfg = app.config
    client = RouterClient(
        tracking_uri=cfg.get("ROUTER_TRACKING_URI") or default_tracking_uri(),
        model_name=cfg.get("ROUTER_MODEL_NAME", "inferroute"),
        alias=cfg.get("ROUTER_ALIAS", "champion"),
        poll_s=float(cfg.get("ROUTER_POLL_S", 30.0)),
    )
    try:
        client.refresh()  # load the champion at start-up, before the first request
    except Exception:
        logger.exception("could not load the champion router; serving with the prior router")
    # poll from now on, not from this worker's first request: a worker that has served nothing
    # yet must answer its first request with the champion promoted meanwhile, not the one (or
    # the prior router) it started with (the app is built in each gunicorn worker, after the fork)
    client.start_polling()
    return client


def to_card(model: CatalogModel, micros_per_credit: int = 1_000_000) -> ModelCard:
    routing = dict(model.routing or {})
    return ModelCard(
        id=model.id,
        input_price_per_mtok=model.input_price_micros_per_mtok / micros_per_credit,
        output_price_per_mtok=model.output_price_micros_per_mtok / micros_per_credit,
        context_length=model.context_length,
        ttft_ms=model.ttft_ms,
        tpot_ms=model.tpot_ms,
        quality_proxy=routing.get("quality_proxy"),
        quality_prior=routing.get("quality_prior"),
    )


def live_stats(engines: Engines, model_id: str) -> LiveStats:
    stats = engines.stats(model_id)
    available = engines.health(model_id) == "ready"
    if stats is None:
        return LiveStats(available=available)
    return LiveStats(
        queue_depth=stats.queue_depth,
        ttft_ms=stats.ttft_ms,
        tpot_ms=stats.tpot_ms,
        available=available,
    )
