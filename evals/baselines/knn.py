"""kNN on prompt embeddings (RouterBench's KNN router): mean score of the k nearest prompts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from evals.baselines.base import Baseline, ScoreMatrix
from evals.embeddings import embed


class KNNBaseline(Baseline):
    name = "knn"

    def __init__(self, k: int = 40) -> None:
        super().__init__(k=k)
        self.k = k
        self._emb: NDArray[np.float32] | None = None
        self._scores: NDArray[np.float64] | None = None

    def _fit(self, sm: ScoreMatrix) -> None:
        self._emb = embed(sm.prompts)
        self._scores = sm.scores

    def _predict(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        assert self._emb is not None and self._scores is not None
        q = embed(prompts)
        k = min(self.k, len(self._emb))
        out = np.empty((len(prompts), self._scores.shape[1]))
        for start in range(0, len(prompts), 512):
            sims = q[start : start + 512] @ self._emb.T  # cosine: vectors are normalised
            nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            neigh = self._scores[nn]  # (b, k, m)
            with np.errstate(all="ignore"):
                mean = np.nanmean(neigh, axis=1)
            out[start : start + 512] = np.where(np.isfinite(mean), mean, self.prior_[None, :])
        return out
