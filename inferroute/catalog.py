"""Default model cards: prices of the trained models and profiles of catalog models with no data.

Read from `data/router.yaml` (`prices`, `default_price`, `catalog`) when a router is trained; the
cards are then saved with the router, so loading a router never needs the YAML. Catalog entries may
be glob patterns (`local/tiny-*`): `CardBook.card(model_id)` resolves them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from inferroute.config import DEFAULT_CONFIG_PATH
from inferroute.types import ModelCard


def _card(model: str, price: list[float], **kw: Any) -> ModelCard:
    extra: dict[str, Any] = {}
    if len(price) >= 4:
        extra = {"ttft_ms": float(price[2]), "tpot_ms": float(price[3])}
    return ModelCard(model, float(price[0]), float(price[1]), **extra, **kw)


class CardBook:
    """Exact cards plus glob-pattern templates."""

    def __init__(self, cards: Mapping[str, ModelCard], patterns: Mapping[str, ModelCard]):
        self.cards = dict(cards)
        self.patterns = dict(patterns)

    def card(self, model: str) -> ModelCard | None:
        if model in self.cards:
            return self.cards[model]
        for pattern, template in self.patterns.items():
            if fnmatch.fnmatch(model, pattern):
                d = asdict(template)
                d["id"] = model
                return ModelCard(**d)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cards": {k: asdict(v) for k, v in self.cards.items()},
            "patterns": {k: asdict(v) for k, v in self.patterns.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CardBook:
        return cls(
            {k: ModelCard(**v) for k, v in d["cards"].items()},
            {k: ModelCard(**v) for k, v in d["patterns"].items()},
        )


def load_cardbook(trained_models: Iterable[str], path: str | Path | None = None) -> CardBook:
    import yaml

    with open(path or DEFAULT_CONFIG_PATH, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    prices: dict[str, list[float]] = data.get("prices", {})
    default = data.get("default_price", [1.0, 1.0])
    cards = {m: _card(m, prices.get(m, default)) for m in trained_models}
    patterns: dict[str, ModelCard] = {}
    for model, spec in (data.get("catalog") or {}).items():
        card = _card(
            model,
            spec.get("price", default),
            quality_proxy=spec.get("proxy"),
            quality_prior=spec.get("prior"),
        )
        if any(ch in model for ch in "*?["):
            patterns[model] = card
        else:
            cards[model] = card
    return CardBook(cards, patterns)
