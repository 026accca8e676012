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
        self._emb: NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
        self._scores: NDArray[np.float64] = np.zeros((0, 0))

    def _fit(self, sm: ScoreMatrix) -> None:
        self._scores = sm.scores
        self._emb = embed(sm.prompts)

    @staticmethod
    def _wins(s: NDArray[np.float64]) -> NDArray[np.float64]:
        """(n, k) scores -> (n, k*k) battle outcomes: row model beat column model (tie = 0.5)."""
        both = np.isfinite(s)[:, :, None] & np.isfinite(s)[:, None, :]
        with np.errstate(invalid="ignore"):
            a, b = s[:, :, None], s[:, None, :]
            wins = np.where(both, (a > b) + 0.5 * (a == b), 0.0)
        k = s.shape[1]
        wins[:, np.arange(k), np.arange(k)] = 0.0
        return wins.reshape(len(s), k * k)

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

    def predict_quality(self, prompts: Sequence[str], models: Sequence[str]) -> NDArray[np.float64]:
        """Battles among the requested pool only (a BT fit over the pool, not every model)."""
        known = {m: j for j, m in enumerate(self.models_)}
        cols = [i for i, m in enumerate(models) if m in known]
        out = np.full((len(prompts), len(models)), 0.5)
        if len(cols) < 2 or not len(prompts):
            return out
        sub = self._scores[:, [known[models[i]] for i in cols]]
        rows = np.isfinite(sub).sum(axis=1) >= 2  # prompts where pool models actually met
        if not rows.any():
            return out
        wins, emb = self._wins(sub[rows]), self._emb[rows]
        q = embed(prompts)
        k = len(cols)
        for start in range(0, len(prompts), 256):
            sims = (q[start : start + 256] @ emb.T).astype(np.float64)
            max_sim = np.maximum(sims.max(axis=1, keepdims=True), 1e-6)
            w = 10.0 * 10.0 ** (sims / max_sim)
            pi = self._bt((w @ wins).reshape(-1, k, k))
            p = pi[:, :, None] / (pi[:, :, None] + pi[:, None, :])
            out[start : start + 256, cols] = (p.sum(axis=2) - 0.5) / max(k - 1, 1)
        return out

    def _predict(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        return self.predict_quality(prompts, self.models_)
