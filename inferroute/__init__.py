"""InferRoute: classify a prompt, score every model in a pool on quality, cost and latency, pick one.

No Flask, no I/O and no model loading at import time.
"""

from inferroute.types import (
    OPTIMIZE_MODES,
    CandidateScore,
    LiveStats,
    ModelCard,
    RouteDecision,
)

__all__ = [
    "OPTIMIZE_MODES",
    "CandidateScore",
    "LiveStats",
    "ModelCard",
    "RouteDecision",
]
