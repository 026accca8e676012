"""A BERT-style classifier baseline: a small MLP head on frozen MiniLM sentence embeddings.

RouteLLM's BERT router fine-tunes a BERT-base encoder with a classification head on preference
labels. Fine-tuning a transformer does not fit this project's 2-core CPU budget, so this baseline
keeps the encoder frozen (all-MiniLM-L6-v2, a 6-layer BERT-style model) and trains only the head:
one hidden layer, one sigmoid output per model (P(model answers well)), masked BCE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evals.baselines._torch import train_masked
from evals.baselines.base import Baseline, ScoreMatrix
from evals.embeddings import embed


class ClassifierBaseline(Baseline):
    name = "bert_head"

    def __init__(
        self,
        hidden: int = 256,
        epochs: int = 20,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        dropout: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__(
            hidden=hidden,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            dropout=dropout,
            seed=seed,
        )
        self.seed = seed
        self.hidden, self.epochs, self.lr = hidden, epochs, lr
        self.weight_decay, self.dropout = weight_decay, dropout
        self._net: Any = None

    def _fit(self, sm: ScoreMatrix) -> None:
        import torch

        x = embed(sm.prompts)
        torch.manual_seed(self.seed)
        self._net = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], self.hidden),
            torch.nn.GELU(),
            torch.nn.Dropout(self.dropout),
            torch.nn.Linear(self.hidden, len(sm.models)),
        )
        self._net.train()
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
        self._net.eval()

    def _predict(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        import torch

        with torch.no_grad():
            logits = self._net(torch.from_numpy(embed(prompts)))
            return torch.sigmoid(logits).numpy().astype(np.float64)
