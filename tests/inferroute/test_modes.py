"""Optimize modes mean what they say, and a low task confidence makes the safe choice."""

from __future__ import annotations

import copy

from tests.inferroute.conftest import GPT4, MESSAGES, MIXTRAL, POOL

PROMPTS = [
    "Hi!",
    "Prove that there are infinitely many prime numbers.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "What is the capital of Australia?",
    "Summarize this paragraph: the council voted 7 to 2 to fund a pilot bike lane.",
]


def _with(router, **overrides):
    r = copy.copy(router)
    r.config = router.config.with_overrides(**overrides)
    return r


def test_modes_are_ordered_on_every_prompt(tiny_router) -> None:
    for text in PROMPTS:
        msgs = [{"role": "user", "content": text}]
        d = {m: tiny_router.route(msgs, POOL, optimize=m) for m in ("quality", "balanced", "cost")}
        c = {m: d[m].candidates[d[m].model] for m in d}
        assert c["cost"].cost <= c["balanced"].cost <= c["quality"].cost, text
        assert c["cost"].quality <= c["balanced"].quality <= c["quality"].quality, text
        fast = tiny_router.route(msgs, POOL, optimize="latency")
        assert all(fast.candidates[fast.model].latency_ms <= c[m].latency_ms for m in c), text


def test_low_confidence_decides_on_general_quality_and_says_so(tiny_router) -> None:
    unsure = _with(tiny_router, low_confidence_threshold=1.01)  # every prompt counts as unsure
    picks = set()
    for text in PROMPTS:
        msgs = [{"role": "user", "content": text}]
        d = unsure.route(msgs, [MIXTRAL, GPT4], optimize="quality")
        assert d.extra["low_confidence"] is True and d.extra["quality_basis"] == "general"
        picks.add(d.model)
        cheap = unsure.route(msgs, POOL, optimize="cost")
        assert cheap.extra["low_confidence"] is True
        # cost: the cheapest model within the cost slack of the generally strongest, whatever the
        # prompt: the same pick for every prompt
        picks_cost = {unsure.route(m, POOL, optimize="cost").model for m in MESSAGES}
        assert picks_cost == {cheap.model}
    assert picks == {GPT4}  # quality: the strongest model in general, for every prompt
    sure = _with(tiny_router, low_confidence_threshold=0.0)
    d = sure.route(MESSAGES[0], POOL, optimize="quality")
    assert "low_confidence" not in d.extra


def test_a_named_task_is_never_low_confidence(tiny_router) -> None:
    unsure = _with(tiny_router, low_confidence_threshold=1.01)
    d = unsure.route(MESSAGES[0], POOL, optimize="quality", task="code_generation")
    assert d.confidence == 1.0 and "low_confidence" not in d.extra
