"""The router `python -m evals train` produces, on real prompts: the everyday prompts fixture,
held-out difficulty labels and answer lengths, and ShareGPT traffic through realistic pools."""

from __future__ import annotations

import pytest

from evals import experiments, traffic
from evals import realprompts as R
from evals.suite import SuiteConfig

# the first test of a session trains the router (about 4 CPU-minutes; longer on a busy machine)
pytestmark = pytest.mark.timeout(3600)

# Task accuracy over tests/fixtures/everyday_prompts.yaml. The router `evals train` trains scored
# 0.725 (29 of 40) with data/router.yaml's defaults (session 4's final router) and with the issue-12
# follow-up recipe (docs/evals.md); the recipe before the real-prompt classifier scored 0.375. The
# floor leaves two prompts of slack.
TASK_ACCURACY_MIN = 0.675


@pytest.fixture(scope="module")
def held_out():
    return experiments.real_prompts(SuiteConfig.load(), "test")


def test_everyday_prompts_get_the_complexity_a_person_expects(trained_router) -> None:
    m = R.everyday_metrics(trained_router)
    wrong = [
        (r["prompt"], r["complexity"], r["pred_complexity"])
        for r in m["rows"]
        if r["complexity"] != "any" and r["pred_complexity"] != r["complexity"]
    ]
    assert m["simple_called_simple"] >= 0.8, wrong
    assert m["complex_called_complex"] >= 0.75, wrong
    assert m["task_accuracy"] >= TASK_ACCURACY_MIN


def test_complexity_ranks_held_out_difficulty_labels(trained_router, held_out) -> None:
    m = R.complexity_metrics(trained_router, held_out["difficulty"])
    assert m["n"] > 200
    assert m["spearman"] >= 0.5
    shares = m["label_shares"]
    assert (
        shares["simple lifestyle knowledge"]["simple"] > shares["expert level knowledge"]["simple"]
    )
    assert (
        shares["expert level knowledge"]["complex"]
        > shares["simple lifestyle knowledge"]["complex"]
    )


def test_expected_output_tokens_track_held_out_answer_lengths(trained_router, held_out) -> None:
    m = R.length_metrics(trained_router, held_out["answers"], {"const": R.constant_lengths(300.0)})
    assert m["n"] > 10000
    assert m["router.median_abs_log_ratio"] < m["const.median_abs_log_ratio"] - 0.1
    assert m["router.within_2x"] > 0.6


def test_modes_keep_their_order_on_sharegpt_for_every_pool(trained_router) -> None:
    prompts = traffic.sharegpt_prompts(120)
    df = traffic.route_traffic(trained_router, prompts)
    summary = traffic.mode_summary(df)
    assert traffic.mode_order(summary) == []
    assert set(summary["pool"]) == {p.name for p in traffic.POOLS}
    assert traffic.mix(df, "task").sum() == pytest.approx(1.0)
    md = traffic.markdown(summary, {"task mix": traffic.mix(df, "task")}, len(prompts))
    assert "| cost |" in md and "Qwen/Qwen3-14B" in md
