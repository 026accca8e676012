"""Router baselines: every one implements `fit(train_df)` and `predict_quality(prompts, models)`."""

from __future__ import annotations

from typing import Any

from evals.baselines.base import Baseline, ScoreMatrix
from evals.baselines.classifier import ClassifierBaseline
from evals.baselines.knn import KNNBaseline
from evals.baselines.mf import MatrixFactorizationBaseline
from evals.baselines.simple import OracleBaseline, RandomBaseline, SingleModelBaseline
from evals.baselines.sw import SWRankingBaseline

BASELINES: dict[str, type[Baseline]] = {
    "random": RandomBaseline,
    "single": SingleModelBaseline,
    "oracle": OracleBaseline,
    "knn": KNNBaseline,
    "mf": MatrixFactorizationBaseline,
    "sw_ranking": SWRankingBaseline,
    "bert_head": ClassifierBaseline,
}
# trained and reported by default (single models, oracle and zero router are built per benchmark)
LEARNED = ("random", "knn", "mf", "sw_ranking", "bert_head")


def get_baseline(name: str, **params: Any) -> Baseline:
    try:
        cls = BASELINES[name]
    except KeyError:
        raise KeyError(
            f"unknown baseline {name!r}. Supported baselines: {sorted(BASELINES)}"
        ) from None
    return cls(**params)


__all__ = ["BASELINES", "LEARNED", "Baseline", "ScoreMatrix", "get_baseline"]
