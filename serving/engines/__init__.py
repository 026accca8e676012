"""Engines: the model catalog, the vLLM client behind the chat endpoint, and local engines.

`build_engines(app_or_config)` is the factory the gateway calls (``ENGINES_FACTORY``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serving.engines.base import CatalogModel, EngineError, Engines, EngineStats, Health

__all__ = [
    "CatalogModel",
    "EngineError",
    "EngineStats",
    "Engines",
    "Health",
    "build_engines",
]


def build_engines(app_or_config: Any) -> Engines:
    """Build `VLLMEngines` from the catalog named by the config key ``CATALOG`` (a Flask app or a
    mapping). Local launch specs get a process check under ``<HOME>/engines`` so a starting server
    reads as `loading`. Optional keys: ENGINES_CONNECT_TIMEOUT_S, ENGINES_READ_TIMEOUT_S,
    ENGINES_KEEPALIVE_S, ENGINES_MONITOR_INTERVAL_S."""
    from serving.engines import local
    from serving.engines.catalog import load_catalog
    from serving.engines.vllm import VLLMEngines

    cfg: Mapping[str, Any] = getattr(app_or_config, "config", app_or_config)
    path = cfg.get("CATALOG") or local.REPO_ROOT / "data" / "catalog.local.yaml"
    models = load_catalog(Path(path))
    rd = local.run_dir(cfg.get("HOME"))
    alive = local.process_alive_checker(rd) if any(m.launch for m in models) else None
    return VLLMEngines(
        models,
        connect_timeout_s=float(cfg.get("ENGINES_CONNECT_TIMEOUT_S", 2.0)),
        read_timeout_s=float(cfg.get("ENGINES_READ_TIMEOUT_S", 300.0)),
        keepalive_s=float(cfg.get("ENGINES_KEEPALIVE_S", 15.0)),
        monitor_interval_s=float(cfg.get("ENGINES_MONITOR_INTERVAL_S", 2.0)),
        process_alive=alive,
    )
