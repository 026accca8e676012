"""Builds the `Engines` object of the app (``app.extensions["engines"]``).

Order: ``ENGINES`` in the test config (an object), else the ``ENGINES_FACTORY`` import path
("module:callable", called with the app). When the default factory is missing, the gateway starts
with no models and says so in the log.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from typing import Any

from flask import Flask

from serving.config import DEFAULTS
from serving.engines.base import CatalogModel, EngineError, Engines, EngineStats, Health

logger = logging.getLogger(__name__)


class NoEngines:
    """An empty catalog: every model is unknown."""

    def models(self) -> list[CatalogModel]:
        return []

    def get(self, model_id: str) -> CatalogModel | None:
        return None

    def health(self, model_id: str) -> Health:
        return "unavailable"

    def stats(self, model_id: str) -> EngineStats | None:
        return None

    def complete(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        raise EngineError(f"No engine serves {model_id}.", status=404, code="model_not_found")

    def stream(self, model_id: str, body: dict[str, Any]) -> Iterator[dict[str, Any] | None]:
        raise EngineError(f"No engine serves {model_id}.", status=404, code="model_not_found")

    def close(self) -> None:
        pass


def load_factory(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr or "make_engines")


def build(app: Flask) -> Engines:
    if app.config.get("ENGINES") is not None:
        return app.config["ENGINES"]
    path = str(app.config["ENGINES_FACTORY"])
    try:
        factory = load_factory(path)
    except (ImportError, AttributeError):
        if path != DEFAULTS["ENGINES_FACTORY"]:
            raise
        logger.warning("engines factory %s not found: serving with no models", path)
        return NoEngines()
    return factory(app)
