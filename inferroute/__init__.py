"""InferRoute: classify a prompt, score every model in a pool on quality, cost and latency, pick
one.

No Flask, no I/O and no model loading at import time (heavy modules load lazily on first use).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferroute.config import RouterConfig
from inferroute.errors import ConfigError, InferrouteError, RoutingError, UnknownRouterError
from inferroute.types import (
    OPTIMIZE,
    OPTIMIZE_MODES,
    CandidateScore,
    LiveStats,
    ModelCard,
    OptimizeMode,
    OptimizeModeInfo,
    RouteDecision,
)

if TYPE_CHECKING:
    from inferroute.learned import LearnedRouter
    from inferroute.policy import Router
    from inferroute.prior import PriorRouter
    from inferroute.registry import ROUTERS

__all__ = [
    "OPTIMIZE",
    "OPTIMIZE_MODES",
    "ROUTERS",
    "CandidateScore",
    "ConfigError",
    "InferrouteError",
    "LearnedRouter",
    "LiveStats",
    "ModelCard",
    "OptimizeMode",
    "OptimizeModeInfo",
    "PriorRouter",
    "RouteDecision",
    "Router",
    "RouterConfig",
    "RoutingError",
    "UnknownRouterError",
    "load_router",
    "train",
]

_LAZY = {
    "LearnedRouter": "inferroute.learned",
    "PriorRouter": "inferroute.prior",
    "Router": "inferroute.policy",
    "ROUTERS": "inferroute.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'inferroute' has no attribute {name!r}")


def load_router(uri: str | Path) -> Router:
    """A router from a saved directory (`Router.save`) or an MLflow model URI
    (`models:/inferroute@champion`, `runs:/...`; mlflow is imported only then)."""
    text = str(uri)
    if "://" not in text and not text.startswith(("models:/", "runs:/")):
        from inferroute.persist import load_router_dir

        return load_router_dir(Path(text))
    from inferroute.packaging import load_mlflow_router

    return load_mlflow_router(text)


def train(
    scores_df: Any, labels_df: Any, config: RouterConfig | None = None, **kwargs: Any
) -> LearnedRouter:
    """Train a LearnedRouter on the long score table and the task-labelled prompts."""
    from inferroute.training import train as _train

    return _train(scores_df, labels_df, config, **kwargs)
