"""PriorRouter: serves with no training, says so, and follows its card priors."""

from __future__ import annotations

from inferroute import ModelCard, PriorRouter, RouterConfig
from tests.inferroute.conftest import GPT4, MESSAGES, MISTRAL7B, MIXTRAL, POOL


def test_prior_router_routes_without_training(prior_router):
    d = prior_router.route(MESSAGES[0], POOL, optimize="quality")
    assert d.trained is False and d.router_version == "prior"
    assert d.model == GPT4  # highest quality_prior
    assert d.task == "code_generation"
    # cost: cheapest model within epsilon of the best prior (0.9, 0.7, 0.5): the default slack
    # (0.3) admits Mixtral, a tight one GPT-4 alone, a loose one all three
    assert prior_router.route(MESSAGES[0], POOL, optimize="cost").model == MIXTRAL
    tight = PriorRouter(prior_router.book, RouterConfig().with_overrides(policy_cost_epsilon=0.1))
    assert tight.route(MESSAGES[0], POOL, optimize="cost").model == GPT4
    loose = PriorRouter(prior_router.book, RouterConfig().with_overrides(policy_cost_epsilon=0.5))
    assert loose.route(MESSAGES[0], POOL, optimize="cost").model == MISTRAL7B


def test_prior_router_needs_only_cards():
    router = PriorRouter({"a": ModelCard("a", 1.0, 1.0), "b": ModelCard("b", 0.1, 0.1)})
    d = router.route([{"role": "user", "content": "hi"}], ["a", "b"], optimize="cost")
    assert d.model == "b" and d.candidates["a"].quality == 0.5
