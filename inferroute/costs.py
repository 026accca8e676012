"""Expected cost and latency of a request on each model.

Cost = card prices x (prompt tokens, expected output tokens); expected output tokens per model and
task come from the output lengths in the training data (`OutputLengths`). Latency = time to first
token + time per output token x expected output tokens, from the card's priors, replaced by the
engine's live figures (`LiveStats`) when serving passes them, and stretched by the live queue
depth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from inferroute.types import LiveStats, ModelCard

CHARS_PER_TOKEN = 4.0


def count_tokens(text: str) -> int:
    """Cheap token estimate (4 characters a token); no tokenizer on the routing path."""
    return max(1, int(len(text) / CHARS_PER_TOKEN))


@dataclass(frozen=True)
class OutputLengths:
    """Expected output tokens by (model, task); else the task's typical length times the model's
    verbosity (`model_factor`, from a log-additive fit: inferroute.difficulty); else by task, by
    model, then a default. `model` first, then its card's quality proxy."""

    by_model_task: Mapping[str, float] = field(default_factory=dict)  # key f"{model}|{task}"
    by_model: Mapping[str, float] = field(default_factory=dict)
    by_task: Mapping[str, float] = field(default_factory=dict)
    default: float = 300.0
    model_factor: Mapping[str, float] = field(default_factory=dict)

    def expected(self, model: str, task: str, proxy: str | None = None) -> float:
        for name in (model, proxy):
            if name is None:
                continue
            key = f"{name}|{task}"
            if key in self.by_model_task:
                return float(self.by_model_task[key])
        if task in self.by_task:
            for name in (model, proxy):
                if name is not None and name in self.model_factor:
                    return float(self.by_task[task] * self.model_factor[name])
            return float(self.by_task[task])
        for name in (model, proxy):
            if name is not None and name in self.by_model:
                return float(self.by_model[name])
        return self.default

    def to_dict(self) -> dict[str, object]:
        return {
            "by_model_task": dict(self.by_model_task),
            "by_model": dict(self.by_model),
            "by_task": dict(self.by_task),
            "default": self.default,
            "model_factor": dict(self.model_factor),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> OutputLengths:
        def fdict(v: object) -> dict[str, float]:
            return {str(k): float(x) for k, x in dict(v).items()}  # type: ignore[call-overload]

        return cls(
            fdict(d["by_model_task"]),
            fdict(d["by_model"]),
            fdict(d["by_task"]),
            float(d["default"]),  # type: ignore[arg-type]
            fdict(d.get("model_factor", {})),
        )


def expected_cost(card: ModelCard, prompt_tokens: int, output_tokens: float) -> float:
    return (
        card.input_price_per_mtok * prompt_tokens + card.output_price_per_mtok * output_tokens
    ) / 1e6


def expected_latency_ms(
    card: ModelCard, output_tokens: float, live: LiveStats | None, queue_penalty: float
) -> float:
    ttft = card.ttft_ms
    tpot = card.tpot_ms
    queue = 0.0
    if live is not None:
        ttft = live.ttft_ms if live.ttft_ms is not None else ttft
        tpot = live.tpot_ms if live.tpot_ms is not None else tpot
        queue = max(live.queue_depth, 0.0)
    return (ttft + tpot * output_tokens) * (1.0 + queue_penalty * queue)
