"""The baseline contract: `fit(train_df)` on the long score table, then `predict_quality`.

The same `predict_quality` interface as `inferroute` routers, so the harness treats both alike.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class ScoreMatrix:
    """Training prompts x models; NaN where a model has no score for a prompt."""

    prompts: list[str]
    models: list[str]
    scores: NDArray[np.float64]

    @classmethod
    def from_long(cls, df: pd.DataFrame) -> ScoreMatrix:
        wide = df.pivot_table(index="prompt", columns="model", values="score", aggfunc="mean")
        return cls(
            [str(p) for p in wide.index],
            [str(m) for m in wide.columns],
            wide.to_numpy(dtype=np.float64),
        )

    def model_means(self) -> NDArray[np.float64]:
        with np.errstate(all="ignore"):
            means = np.nanmean(self.scores, axis=0)
        return np.where(np.isfinite(means), means, 0.5)


class Baseline(abc.ABC):
    """A router baseline. Subclasses implement `_fit` and `_predict` over known models."""

    name: str = "baseline"

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.models_: list[str] = []
        self.prior_: NDArray[np.float64] = np.zeros(0)

    def fit(self, train_df: pd.DataFrame) -> Self:
        sm = ScoreMatrix.from_long(train_df)
        self.models_, self.prior_ = sm.models, sm.model_means()
        self._fit(sm)
        return self

    @abc.abstractmethod
    def _fit(self, sm: ScoreMatrix) -> None: ...

    @abc.abstractmethod
    def _predict(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        """(n, len(self.models_)) predicted quality for the training models."""

    def predict_quality(self, prompts: Sequence[str], models: Sequence[str]) -> NDArray[np.float64]:
        """(n, m) expected score in [0, 1]; a model never seen in training gets 0.5."""
        known = {m: j for j, m in enumerate(self.models_)}
        out = np.full((len(prompts), len(models)), 0.5)
        cols = [(i, known[m]) for i, m in enumerate(models) if m in known]
        if cols and len(prompts):
            pred = self._predict(list(prompts))
            for i, j in cols:
                out[:, i] = pred[:, j]
        return out

    def config(self) -> dict[str, Any]:
        return {"baseline": self.name, **self.params}
