"""Expected quality of every model on a prompt, from the per-prompt score tables.

Two parts, combined per model m and prompt p:

- a task prior: sum_t P(t | p) * mean score of m on task t (the per-task means shrink to the
  model's overall mean when a model has few rows for a task), so the classifier's task type is a
  feature and a model with little data still gets a sensible profile;
- a neighbour estimate: the similarity-weighted mean score of m on the k most similar scored
  training prompts (cosine on the prompt embedding, weight = max(cos, 0) ** power).

    q(p, m) = (sum_k w_k * s_km + kappa * prior(p, m)) / (sum_k w_k + kappa)

Every score table (0/1 correctness, judge scores rescaled to 0-1, AlpacaEval win probabilities)
lands in one prompts x models matrix; the neighbours of a prompt come from every dataset that
scored m. Quick evidence for this choice (see the closing report of issue 4): a factorisation over
prompts x models on the same static features ranked held-out MMLU/GSM8K prompts no better than
chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
_CHUNK = 256


@dataclass
class QualityModel:
    models: tuple[str, ...]
    emb: npt.NDArray[np.float16]  # (P, d) scored training prompts, L2-normalised
    scores: npt.NDArray[np.float32]  # (P, M), NaN where a model has no score
    task_means: FloatArray  # (M, T) over TASK_NAMES
    k: int
    power: float
    kappa: float
    dims: int = 0  # >0: neighbours use only the first `dims` (PCA-ordered) embedding dimensions

    def __post_init__(self) -> None:
        self._rows = [np.flatnonzero(~np.isnan(self.scores[:, j])) for j in range(len(self.models))]
        self._emb32 = np.ascontiguousarray(self._project(self.emb))

    def _project(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """The neighbour space: leading dimensions, re-normalised (cheaper search, same cosine)."""
        x = np.asarray(x, dtype=np.float32)
        if 0 < self.dims < x.shape[1]:
            x = x[:, : self.dims]
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
        return x

    def index(self, model: str) -> int:
        return self.models.index(model)

    def prior(self, task_probs: npt.NDArray[Any], model_idx: Sequence[int]) -> FloatArray:
        out: FloatArray = task_probs @ self.task_means[list(model_idx)].T
        return out

    def predict(
        self, x: npt.NDArray[Any], task_probs: npt.NDArray[Any], model_idx: Sequence[int]
    ) -> FloatArray:
        """(n, len(model_idx)) expected scores for prompts with embeddings x."""
        idx = list(model_idx)
        out = np.zeros((x.shape[0], len(idx)))
        prior = self.prior(task_probs, idx)
        for start in range(0, x.shape[0], _CHUNK):
            sims_all = (self._emb32 @ self._project(x[start : start + _CHUNK]).T).T
            for col, j in enumerate(idx):
                rows = self._rows[j]
                if len(rows) == 0:
                    out[start : start + _CHUNK, col] = prior[start : start + _CHUNK, col]
                    continue
                sims = sims_all[:, rows]
                k = min(self.k, len(rows))
                top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
                w = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0) ** self.power
                s = self.scores[rows[top], j]
                p = prior[start : start + _CHUNK, col]
                out[start : start + _CHUNK, col] = ((w * s).sum(1) + self.kappa * p) / (
                    w.sum(1) + self.kappa
                )
        return np.clip(out, 0.0, 1.0)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"q_emb": self.emb, "q_scores": self.scores, "q_task_means": self.task_means}

    def params(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "k": self.k,
            "power": self.power,
            "kappa": self.kappa,
            "dims": self.dims,
        }

    @classmethod
    def from_saved(cls, params: dict[str, Any], arr: Any) -> QualityModel:
        return cls(
            tuple(params["models"]),
            arr["q_emb"],
            arr["q_scores"],
            arr["q_task_means"],
            int(params["k"]),
            float(params["power"]),
            float(params["kappa"]),
            int(params.get("dims", 0)),
        )


def task_means(
    scores: npt.NDArray[np.float32], task_idx: npt.NDArray[np.int64], n_tasks: int, shrink: float
) -> FloatArray:
    """(M, T) per-model, per-task mean scores shrunk toward each model's mean."""
    n_models = scores.shape[1]
    out = np.zeros((n_models, n_tasks))
    for j in range(n_models):
        col = scores[:, j]
        has = ~np.isnan(col)
        overall = float(col[has].mean()) if has.any() else 0.5
        for t in range(n_tasks):
            sel = has & (task_idx == t)
            n = int(sel.sum())
            total = float(col[sel].sum()) if n else 0.0
            out[j, t] = (total + shrink * overall) / (n + shrink)
    return out
