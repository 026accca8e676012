"""`python -m evals judge`: grade the gateway's stored side-by-side pairs with a judge model.

Each pair is judged with MT-Bench's pairwise prompt (`pair-v2` of
`<data dir>/mt-bench/judge_prompts.jsonl`, Zheng et al. 2023) twice, once with the pair's answer
`a` shown as "Assistant A" and once swapped, to cancel the judge's position bias. As in MT-Bench
(FastChat `llm_judge`), the two games agree -> that winner; they disagree -> a tie. A game whose
output carries no verdict is an error, and a pair with an erroring game gets no verdict (it stays
unjudged and is tried again next run). The verdict is recorded on the gateway with the judge's model
id (`POST /api/v1/traffic/pairs/{id}/verdicts`), with both games' judgments in `detail`.

Parsing reads the *last* `[[A]]` / `[[B]]` / `[[C]]` in the judgment: the prompt asks for the
verdict at the end, and a judge that first restates the format ("output [[A]] if ...") would be
misread by FastChat's first-match order.

The judge is called through the gateway's own chat completions endpoint, so its calls are billed
and logged like any other request of the key. The default judge is the catalog's strongest model:
the highest `quality_prior` when the model list carries routing hints, otherwise the highest price
(output, then input) - in a self-hosted catalog the dearest model is the largest.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from evals.datasets.source import resolve
from evals.traffic_api import TrafficAPI, TrafficAPIError

logger = logging.getLogger(__name__)

PROMPTS_FILE = "mt-bench/judge_prompts.jsonl"
PROMPT_NAME = "pair-v2"
_VERDICT = re.compile(r"\[\[([ABC])\]\]")

Game = Literal["a", "b", "tie", "error"]


class JudgeError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class JudgePrompt:
    name: str
    system_prompt: str
    prompt_template: str

    def messages(self, question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
        user = self.prompt_template.format(question=question, answer_a=answer_a, answer_b=answer_b)
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": user},
        ]


@cache
def load_prompt(name: str = PROMPT_NAME, path: Path | None = None) -> JudgePrompt:
    """One of MT-Bench's judge prompts (the data directory's copy, else the pinned upstream)."""
    source = path or resolve(PROMPTS_FILE)
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            if d["name"] == name:
                return JudgePrompt(d["name"], d["system_prompt"], d["prompt_template"])
    raise JudgeError(f"no judge prompt {name!r} in {source}")


def parse_verdict(judgment: str) -> Game:
    """`[[A]]` -> "a", `[[B]]` -> "b", `[[C]]` -> "tie" (the last one given), none -> "error"."""
    found = _VERDICT.findall(judgment)
    if not found:
        return "error"
    return {"A": "a", "B": "b", "C": "tie"}[found[-1]]  # type: ignore[return-value]


def combine(first: Game, swapped: Game) -> Game:
    """Both orders -> one verdict in the pair's own terms. `first` judged (a as A, b as B),
    `swapped` judged (b as A, a as B) and is already mapped back to a/b. Agreement -> that winner,
    disagreement -> tie, any error -> error."""
    if "error" in (first, swapped):
        return "error"
    return first if first == swapped else "tie"


def _swap(game: Game) -> Game:
    return {"a": "b", "b": "a"}.get(game, game)  # type: ignore[return-value]


def question_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The user question(s) shown to the judge: the single user turn, or the conversation."""
    turns = [m for m in messages if m.get("role") != "system"]
    if len(turns) == 1:
        return _text(turns[0].get("content"))
    return "\n\n".join(f"{m.get('role', 'user')}: {_text(m.get('content'))}" for m in turns)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def default_judge(models: Sequence[Mapping[str, Any]]) -> str:
    """The catalog's strongest model: highest quality prior if listed, else highest price."""
    if not models:
        raise JudgeError("the gateway lists no models to judge with")

    def prior(m: Mapping[str, Any]) -> float:
        routing = m.get("routing") or {}
        value = routing.get("quality_prior", m.get("quality_prior"))
        return float(value) if value is not None else -1.0

    def price(m: Mapping[str, Any]) -> tuple[float, float]:
        p = m.get("pricing") or {}
        return float(p.get("output_micros_per_mtok", 0)), float(p.get("input_micros_per_mtok", 0))

    best = max(models, key=lambda m: (prior(m), *price(m), str(m["id"])))
    return str(best["id"])


@dataclass
class JudgeReport:
    judge: str
    judged: int = 0
    errors: int = 0
    skipped: int = 0
    winners: dict[str, int] = field(default_factory=lambda: {"a": 0, "b": 0, "tie": 0})
    inconsistent: int = 0  # the two orders disagreed (recorded as ties)


def judge_pair(
    api: TrafficAPI, pair: Mapping[str, Any], judge: str, prompt: JudgePrompt, max_tokens: int
) -> tuple[Game, dict[str, Any]]:
    """Both games of one pair -> (combined verdict, detail)."""
    question = question_text(pair["messages"])
    a, b = str(pair["answer_a"]), str(pair["answer_b"])
    first_text = api.chat(judge, prompt.messages(question, a, b), max_tokens=max_tokens)
    swapped_text = api.chat(judge, prompt.messages(question, b, a), max_tokens=max_tokens)
    first, swapped = parse_verdict(first_text), _swap(parse_verdict(swapped_text))
    verdict = combine(first, swapped)
    detail = {
        "prompt": prompt.name,
        "consistent": first == swapped,
        "games": [
            {"order": "a-b", "winner": first, "judgment": first_text[-2000:]},
            {"order": "b-a", "winner": swapped, "judgment": swapped_text[-2000:]},
        ],
    }
    return verdict, detail


def judge_pairs(
    api: TrafficAPI,
    judge: str | None = None,
    *,
    limit: int | None = None,
    max_tokens: int = 512,
    prompt: JudgePrompt | None = None,
) -> JudgeReport:
    """Judge every pair the judge has no verdict on yet (oldest first, at most `limit`) and record
    the verdicts. A pair whose judge call fails (context too long, engine down) is counted in
    `errors` and left unjudged."""
    judge = judge or default_judge(api.models())
    prompt = prompt or load_prompt()
    report = JudgeReport(judge)
    pairs = api.pairs(unjudged_by=judge)
    if limit is not None:
        pairs = pairs[:limit]
    for pair in tqdm(pairs, desc=f"judge {judge}", disable=None):
        if not pair.get("answer_a") or not pair.get("answer_b") or not pair.get("messages"):
            report.skipped += 1
            continue
        try:
            verdict, detail = judge_pair(api, pair, judge, prompt, max_tokens)
            if verdict == "error":
                report.errors += 1
                continue
            api.post_verdict(str(pair["id"]), judge, verdict, detail)
        except TrafficAPIError as exc:  # a judge call or the verdict refused (e.g. pair expired)
            logger.warning("pair %s: not judged (%s)", pair.get("id"), exc)
            report.errors += 1
            continue
        report.judged += 1
        report.winners[verdict] += 1
        report.inconsistent += int(not detail["consistent"])
    logger.info("judged %d pairs with %s (%d errors)", report.judged, judge, report.errors)
    return report
