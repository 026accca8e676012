"""Contract every registered router keeps (parametrized over inferroute.registry.ROUTERS)."""

from __future__ import annotations

import math

import pytest

from inferroute import OPTIMIZE_MODES, LiveStats, ModelCard, RoutingError
from inferroute.taxonomy import TASK_NAMES
from tests.inferroute.conftest import GPT4, MESSAGES, MISTRAL7B, MIXTRAL, POOL


def _check(decision, pool, mode):
    assert decision.model in pool
    assert list(decision.candidates) == list(pool)
    assert decision.task in TASK_NAMES
    assert 0.0 <= decision.confidence <= 1.0
    assert decision.complexity in ("simple", "medium", "complex")
    assert 0.0 <= decision.complexity_score <= 1.0
    assert decision.optimize == mode
    assert decision.routing_time_ms > 0
    for cand in decision.candidates.values():
        assert 0.0 <= cand.quality <= 1.0
        assert 0.0 <= cand.score <= 1.0
        assert cand.cost >= 0.0 and math.isfinite(cand.cost)
        assert cand.latency_ms > 0.0
    best = max(c.score for c in decision.candidates.values())
    assert decision.candidates[decision.model].score == best


@pytest.mark.parametrize("mode", OPTIMIZE_MODES)
def test_every_mode_gives_a_valid_decision(any_router, mode):
    for messages in MESSAGES:
        d = any_router.route(messages, POOL, optimize=mode)
        _check(d, POOL, mode)
        assert d.trained is any_router.trained
        assert not d.task_overridden


def test_deterministic(any_router):
    for mode in OPTIMIZE_MODES:
        a = any_router.route(MESSAGES[0], POOL, optimize=mode)
        b = any_router.route(MESSAGES[0], POOL, optimize=mode)
        assert (a.model, a.task, a.confidence, a.complexity_score) == (
            b.model,
            b.task,
            b.confidence,
            b.complexity_score,
        )
        assert a.candidates == b.candidates
    prompts = [m[-1]["content"] for m in MESSAGES]
    assert (
        any_router.predict_quality(prompts, POOL) == any_router.predict_quality(prompts, POOL)
    ).all()


def test_pool_restriction(any_router):
    for pool in ([MIXTRAL], [MISTRAL7B, GPT4]):
        for mode in OPTIMIZE_MODES:
            d = any_router.route(MESSAGES[1], pool, optimize=mode)
            assert d.model in pool and set(d.candidates) == set(pool)


def test_task_override(any_router):
    d = any_router.route(MESSAGES[0], POOL, task="translation")
    assert d.task == "translation" and d.confidence == 1.0 and d.task_overridden


def test_quality_mode_picks_the_best_quality_cost_mode_a_cheaper_one(any_router):
    for messages in MESSAGES:
        q = any_router.route(messages, POOL, optimize="quality")
        c = any_router.route(messages, POOL, optimize="cost")
        best_q = max(x.quality for x in q.candidates.values())
        assert q.candidates[q.model].quality >= best_q - any_router.config.policy_quality_epsilon
        assert c.candidates[c.model].cost <= q.candidates[q.model].cost


def test_errors_are_clear(any_router):
    with pytest.raises(RoutingError, match="balanced, quality, cost, latency"):
        any_router.route(MESSAGES[0], POOL, optimize="fastest")
    with pytest.raises(RoutingError, match="unknown task"):
        any_router.route(MESSAGES[0], POOL, task="poetry")
    with pytest.raises(RoutingError, match="empty model pool"):
        any_router.route(MESSAGES[0], [])
    with pytest.raises(RoutingError, match="not known"):
        any_router.route(MESSAGES[0], ["acme/unknown-model"])


def test_cards_for_unknown_models_and_live_stats(any_router):
    card = ModelCard("acme/new-7b", 0.05, 0.05, ttft_ms=50, tpot_ms=5, quality_prior=0.6)
    pool = [*POOL, "acme/new-7b"]
    d = any_router.route(MESSAGES[0], pool, cards={"acme/new-7b": card})
    _check(d, pool, "balanced")
    # an unavailable model is never chosen; queue depth stretches latency
    live = {m: LiveStats(available=False) for m in pool if m != MIXTRAL}
    assert (
        any_router.route(MESSAGES[0], pool, cards={"acme/new-7b": card}, live=live).model == MIXTRAL
    )
    slow = any_router.route(
        MESSAGES[0], POOL, live={MIXTRAL: LiveStats(queue_depth=8, ttft_ms=100.0, tpot_ms=10.0)}
    )
    fast = any_router.route(
        MESSAGES[0], POOL, live={MIXTRAL: LiveStats(ttft_ms=100.0, tpot_ms=10.0)}
    )
    assert slow.candidates[MIXTRAL].latency_ms > fast.candidates[MIXTRAL].latency_ms
