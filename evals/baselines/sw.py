"""RouteLLM's similarity-weighted (SW) ranking router, reimplemented for per-model scores.

RouteLLM (`routellm/routers/routers.py::SWRankingRouter`): every training battle is weighted by
10 * 10 ** (sim / max_sim), the cosine similarity of its prompt to the query; a Bradley-Terry model
is fitted to the weighted battles; the strong model's win rate over the weak one routes.
Here the battles are derived from the score table: on each training prompt every pair of scored
models plays once (higher score wins, equal scores tie, a tie counting half a win each way). The
weighted BT fit depends only on the weighted win counts, so for each query we aggregate those counts
with one matrix product and solve BT by Hunter's MM iterations (vectorised over queries).
`predict_quality` returns each model's mean BT win probability against the rest of the pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from evals.baselines.base import Baseline, ScoreMatrix
from evals.embeddings import embed


class SWRankingBaseline(Baseline):
    name = "sw_ranking"

    def __init__(self, iters: int = 60, prior: float = 0.5) -> None:
        super().__init__(iters=iters, prior=prior)
        self.iters, self.prior = iters, prior
        self._emb: NDArray[np.float32] | None = None
        self._wins: NDArray[np.float32] | None = None

    def _fit(self, sm: ScoreMatrix) -> None:
        s = sm.scores
        both = np.isfinite(s)[:, :, None] & np.isfinite(s)[:, None, :]
        with np.errstate(invalid="ignore"):
            a, b = s[:, :, None], s[:, None, :]
            wins = np.where(both, (a > b) + 0.5 * (a == b), 0.0)
        m = s.shape[1]
        wins[:, np.arange(m), np.arange(m)] = 0.0
        self._wins = wins.reshape(len(s), m * m).astype(np.float32)
        self._emb = embed(sm.prompts)

    def _bt(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        """counts (b, m, m): weighted wins of row over column -> strengths (b, m)."""
        b, m, _ = counts.shape
        counts = counts + self.prior * (1 - np.eye(m))[None]  # a tie's worth of prior per pair
        games = counts + counts.transpose(0, 2, 1)
        won = counts.sum(axis=2)
        pi = np.ones((b, m))
        for _ in range(self.iters):
            denom = (games / (pi[:, :, None] + pi[:, None, :])).sum(axis=2)
            pi = won / denom
            pi /= pi.sum(axis=1, keepdims=True)
        return pi

    def _predict(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        assert self._emb is not None and self._wins is not None
        q = embed(prompts)
        m = len(self.models_)
        out = np.empty((len(prompts), m))
        for start in range(0, len(prompts), 256):
            sims = (q[start : start + 256] @ self._emb.T).astype(np.float64)
            max_sim = np.maximum(sims.max(axis=1, keepdims=True), 1e-6)
            w = 10.0 * 10.0 ** (sims / max_sim)
            counts = (w @ self._wins).reshape(-1, m, m)
            pi = self._bt(counts)
            p = pi[:, :, None] / (pi[:, :, None] + pi[:, None, :])
            out[start : start + 256] = (p.sum(axis=2) - 0.5) / max(m - 1, 1)
        return out
