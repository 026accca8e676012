"""RouteLLM's matrix-factorisation router, reimplemented for per-model scores.

RouteLLM (`routellm/routers/matrix_factorization/model.py`): a learned embedding v_m per model
(L2-normalised), a linear projection W of the prompt embedding, and a linear head w, giving
s(m, q) = w . (v_m * W q); it is trained with a Bradley-Terry loss on pairwise preferences. Our
labels are per-model scores in [0, 1], so we train s(m, q) + b_m pointwise with binary cross-entropy
(sigmoid(s) is then P(model m answers well)). The strong-vs-weak win score the two-model sweep uses
is the difference of the two predicted qualities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evals.baselines._torch import train_masked
from evals.baselines.base import Baseline, ScoreMatrix
from evals.embeddings import embed


class MatrixFactorizationBaseline(Baseline):
    name = "mf"

    def __init__(
        self,
        dim: int = 128,
        epochs: int = 30,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> None:
        super().__init__(dim=dim, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed)
        self.dim, self.epochs, self.lr, self.weight_decay = dim, epochs, lr, weight_decay
        self.seed = seed
        self._net: Any = None

    def _build(self, text_dim: int, n_models: int) -> Any:
        import torch

        class MF(torch.nn.Module):
            def __init__(self, dim: int) -> None:
                super().__init__()
                self.P = torch.nn.Embedding(n_models, dim)
                self.text_proj = torch.nn.Linear(text_dim, dim, bias=False)
                self.classifier = torch.nn.Linear(dim, 1, bias=False)
                self.bias = torch.nn.Parameter(torch.zeros(n_models))

            def forward(self, q: Any) -> Any:
                v = torch.nn.functional.normalize(self.P.weight, p=2, dim=1)  # (m, d)
                h = self.text_proj(q)  # (b, d)
                s = self.classifier(h[:, None, :] * v[None, :, :]).squeeze(-1)  # (b, m)
                return s + self.bias

        return MF(self.dim)

    def _fit(self, sm: ScoreMatrix) -> None:
        import torch

        x = embed(sm.prompts)
        torch.manual_seed(self.seed)
        self._net = self._build(x.shape[1], len(sm.models))
        train_masked(
            self._net,
            list(self._net.parameters()),
            x,
            sm.scores,
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )

    def _predict(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        import torch

        with torch.no_grad():
            logits = self._net(torch.from_numpy(embed(prompts)))
            return torch.sigmoid(logits).numpy().astype(np.float64)
