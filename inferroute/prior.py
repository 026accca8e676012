"""PriorRouter: routes from catalog priors only, so a fresh install can serve before training.

Task type comes from a handful of keyword rules (confidence capped at 0.5: they are guesses),
quality from each card's `quality_prior` (0.5 when absent), complexity from prompt length (the only
signal there is without data). Every decision says `trained=False`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferroute.catalog import CardBook
from inferroute.config import RouterConfig
from inferroute.costs import count_tokens
from inferroute.policy import Analysis, FloatArray, Router
from inferroute.types import ModelCard

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "code_generation",
        re.compile(r"```|\b(python|javascript|function|code|sql|bug|class|regex)\b", re.I),
    ),
    (
        "math",
        re.compile(
            r"\b(solve|equation|integral|calculate|how many|probability)\b|\d+\s*[-+*/^]\s*\d+",
            re.I,
        ),
    ),
    ("translation", re.compile(r"\btranslat", re.I)),
    ("summarization", re.compile(r"\b(summari[sz]e|summary|tl;?dr)\b", re.I)),
    ("rewriting", re.compile(r"\b(rewrite|paraphrase|proofread|rephrase|fix the grammar)\b", re.I)),
    ("extraction", re.compile(r"\b(extract|list all the|pull out)\b", re.I)),
    ("classification", re.compile(r"\b(classify|categori[sz]e|sentiment)\b", re.I)),
    ("creative_writing", re.compile(r"\b(poem|story|song|lyrics|haiku|essay)\b", re.I)),
    ("brainstorming", re.compile(r"\b(ideas|brainstorm|suggest(ions)?|names for)\b", re.I)),
    ("analysis", re.compile(r"\b(analy[sz]e|compare|evaluate|pros and cons)\b", re.I)),
    ("chat", re.compile(r"\b(pretend|role-?play|act as|you are a)\b", re.I)),
)


def rule_task(text: str) -> tuple[str, float]:
    for name, pattern in _RULES:
        if pattern.search(text):
            return name, 0.5
    return ("open_qa", 0.3) if text.rstrip().endswith("?") else ("other", 0.2)


class PriorRouter(Router):
    name = "prior"
    trained = False

    def __init__(
        self, cards: Mapping[str, ModelCard] | CardBook, config: RouterConfig | None = None
    ):
        super().__init__(config or RouterConfig(), cards, version="prior")

    def _quality(self, models: Sequence[str], cards: Mapping[str, ModelCard]) -> FloatArray:
        out = []
        for m in models:
            card = cards.get(m) or self.book.card(m)
            prior = card.quality_prior if card is not None else None
            out.append(0.5 if prior is None else float(prior))
        return np.clip(np.array(out, dtype=float), 0.0, 1.0)

    def analyse(
        self, text: str, turns: int, pool: Sequence[str], cards: Mapping[str, ModelCard]
    ) -> Analysis:
        task, conf = rule_task(text)
        tokens = count_tokens(text)
        complexity = float(min(1.0, np.log1p(tokens) / np.log1p(4000)))
        out = np.full(len(pool), self.config.default_output_tokens)
        return Analysis(task, conf, complexity, self._quality(pool, cards), out)

    def classify(self, prompts: Sequence[str]) -> list[tuple[str, float]]:
        return [rule_task(p) for p in prompts]

    def predict_quality(
        self,
        prompts: Sequence[str],
        models: Sequence[str],
        cards: Mapping[str, ModelCard] | None = None,
    ) -> FloatArray:
        row = self._quality(models, cards or {})
        return np.tile(row, (len(prompts), 1))

    @classmethod
    def from_saved(
        cls, path: Path, meta: Mapping[str, Any], config: RouterConfig, book: CardBook
    ) -> PriorRouter:
        return cls(book, config)
