"""Replica bookkeeping: state, outstanding requests, least-outstanding selection, ejection.

All mutation happens under the pool's lock; the health monitor and the request paths share it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

ReplicaState = Literal["unknown", "ready", "loading", "down"]


@dataclass(eq=False)
class Replica:
    model_id: str
    url: str
    index: int = 0  # its place in the model's catalog `replicas` (X-Inferbase-Replica)
    state: ReplicaState = "unknown"
    reason: str | None = None  # why it is not ready
    outstanding: int = 0
    since: float = field(default_factory=time.monotonic)
    # live figures from /metrics (None until read)
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    histos: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (sum, count)
    probe_failures: int = 0  # health probes missed in a row (timeouts, errors)

    def snapshot(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "state": self.state,
            "reason": self.reason,
            "outstanding": self.outstanding,
            "running": self.running,
            "waiting": self.waiting,
            "kv_cache_usage": self.kv_cache_usage,
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
        }


class NoReplica(Exception):
    def __init__(self, loading: bool) -> None:
        super().__init__("no replica available")
        self.loading = loading


class ReplicaPool:
    """The replicas of every model. `acquire` picks the ready replica with the fewest outstanding
    requests (ties rotate); replicas whose state is still `unknown` (never probed) are used only
    when no replica is known ready."""

    def __init__(self, replicas: dict[str, list[str]]) -> None:
        self.lock = threading.Lock()
        self._by_model = {
            m: [Replica(m, u, i) for i, u in enumerate(urls)] for m, urls in replicas.items()
        }
        self._rr = itertools.count()

    def all(self) -> Iterable[Replica]:
        for reps in self._by_model.values():
            yield from reps

    def of(self, model_id: str) -> list[Replica]:
        return self._by_model.get(model_id, [])

    def acquire(self, model_id: str, exclude: set[int] | frozenset[int] = frozenset()) -> Replica:
        with self.lock:
            reps = [r for r in self._by_model.get(model_id, []) if id(r) not in exclude]
            pick = [r for r in reps if r.state == "ready"] or [
                r for r in reps if r.state == "unknown"
            ]
            if not pick:
                raise NoReplica(loading=any(r.state == "loading" for r in reps))
            low = min(r.outstanding for r in pick)
            best = [r for r in pick if r.outstanding == low]
            r = best[next(self._rr) % len(best)]
            r.outstanding += 1
            return r

    def release(self, r: Replica) -> None:
        with self.lock:
            r.outstanding -= 1

    def set_state(self, r: Replica, state: ReplicaState, reason: str | None = None) -> bool:
        """Returns True when the state changed."""
        with self.lock:
            changed = r.state != state
            if changed:
                r.since = time.monotonic()
            r.state, r.reason = state, reason
            return changed

    def eject(self, r: Replica, reason: str) -> None:
        """Take a replica out after a failed request; the monitor brings it back when healthy."""
        with self.lock:
            if r.state != "down":
                r.since = time.monotonic()
            r.state, r.reason = "down", reason
