"""Baselines with no learning: random, a single model, and the oracle (true scores)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from evals.baselines.base import Baseline, ScoreMatrix


class RandomBaseline(Baseline):
    """Uniform random quality per (prompt, model), stable for a prompt and seed."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.seed = seed

    def _fit(self, sm: ScoreMatrix) -> None:
        pass

    def _predict(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        out = np.empty((len(prompts), len(self.models_)))
        for i, p in enumerate(prompts):
            h = int.from_bytes(hashlib.sha1(f"{self.seed}:{p}".encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(h).random(len(self.models_))
        return out

    def predict_quality(self, prompts: Sequence[str], models: Sequence[str]) -> NDArray[np.float64]:
        # random over whatever pool is asked for, trained or not
        saved = self.models_
        self.models_ = list(models)
        try:
            return self._predict(list(prompts)) if len(prompts) else np.zeros((0, len(models)))
        finally:
            self.models_ = saved


class SingleModelBaseline(Baseline):
    """Always the same model: quality 1 for it, 0 for every other."""

    name = "single"

    def __init__(self, model: str) -> None:
        super().__init__(model=model)
        self.model = model

    def _fit(self, sm: ScoreMatrix) -> None:
        pass

    def _predict(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        raise NotImplementedError  # predict_quality below needs no training models

    def predict_quality(self, prompts: Sequence[str], models: Sequence[str]) -> NDArray[np.float64]:
        return np.tile([1.0 if m == self.model else 0.0 for m in models], (len(prompts), 1))


class OracleBaseline(Baseline):
    """Knows the true scores of the table it is given (`fit` on the evaluation rows)."""

    name = "oracle"

    def __init__(self) -> None:
        super().__init__()
        self._lookup: pd.DataFrame | None = None

    def _fit(self, sm: ScoreMatrix) -> None:
        self._lookup = pd.DataFrame(sm.scores, index=sm.prompts, columns=sm.models)

    def _predict(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        assert self._lookup is not None, "fit the oracle on the evaluation table first"
        table = self._lookup.reindex(list(prompts))
        vals = table.to_numpy(dtype=np.float64)
        return np.where(np.isfinite(vals), vals, 0.0)
