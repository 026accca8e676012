"""Learning from traffic in the harness: the traffic metrics, the own-traffic promotion gate, the
learning curve on synthetic task-dependent preferences, and the whole loop against a fake gateway
(judge -> export -> train -> gate)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evals import metrics as M
from evals import promote
from evals.datasets import traffic_log
from evals.learning_curve import (
    WINNERS,
    curve_table,
    learning_curve,
    pairs_needed,
    synthetic_records,
    task_prompts,
    task_recognition,
)
from evals.promote import PromotionConfig, gate
from tests.evals.fake_gateway import FakeGateway

A, B = "local/tiny-a", "local/tiny-b"


# ------------------------------------------------------------------------------ metrics


def test_traffic_win_rate_counts_pairs_with_a_winner():
    gap = [0.2, -0.1, 0.3, 0.0, 0.5]
    outcome = [1.0, 1.0, 0.0, 1.0, 0.5]  # right, wrong, wrong, predicted tie, real tie (left out)
    assert M.traffic_win_rate(gap, outcome) == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert M.traffic_win_rate(gap, outcome, [3, 1, 1, 1, 1]) == pytest.approx(3.5 / 6)
    assert np.isnan(M.traffic_win_rate([0.1], [0.5]))
    assert M.get_metric("traffic_win_rate").higher_is_better


def test_traffic_apgr_is_one_for_the_oracle_and_zero_for_the_anti_oracle():
    strong = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    weak = 1.0 - strong
    assert M.traffic_apgr(strong - weak, strong, weak) > 0.8
    assert M.traffic_apgr(weak - strong, strong, weak) < 0.2
    assert np.isnan(M.traffic_apgr([0.0, 0.0], [1.0, 0.0], [0.0, 1.0]))  # no gap to recover
    gap_02 = ([1, 0, 0, 0, 0], [1, 1, 0, 1, 0], [0, 0, 1, 0, 1])  # strong wins 3 of 5
    assert not np.isnan(M.traffic_apgr(*gap_02))
    assert np.isnan(M.traffic_apgr(*gap_02, min_gap=0.3))


# ------------------------------------------------------------------------------ the gate option


def test_the_traffic_gate_needs_a_traffic_gain_and_no_public_regression():
    cfg = PromotionConfig(require_traffic=True, traffic_margin=0.02, public_tolerance=0.01)
    champ = {"suite_score": 0.60, "routing_p50_ms": 1.0, "traffic_win_rate": 0.55}
    better = {"suite_score": 0.595, "routing_p50_ms": 1.0, "traffic_win_rate": 0.70}
    assert gate(better, champ, cfg)[0]
    # the default gate would refuse the same candidate (public score did not go up)
    assert not gate(better, champ, PromotionConfig())[0]
    ok, why = gate({**better, "traffic_win_rate": 0.56}, champ, cfg)
    assert not ok and "traffic_win_rate" in why
    ok, why = gate({**better, "suite_score": 0.58}, champ, cfg)
    assert not ok and "regresses" in why
    ok, why = gate({**better, "routing_p50_ms": 5.0}, champ, cfg)
    assert not ok and "routing_p50_ms" in why
    ok, why = gate({"suite_score": 0.7, "routing_p50_ms": 1.0}, champ, cfg)
    assert not ok and "--traffic" in why
    assert gate(better, None, cfg)[0]  # no champion yet


# ------------------------------------------------------------------------------ learning curve


def test_synthetic_records_follow_the_export_format_and_the_winners():
    prompts = pd.DataFrame(
        {
            "prompt": ["def f(): pass", "hi there", "sort a list"],
            "task": ["code_generation", "chat", "code_generation"],
        }  # fmt: skip
    )
    recs = synthetic_records(prompts, WINNERS, 400, p_win=0.8, seed=3)
    assert recs == synthetic_records(prompts, WINNERS, 400, p_win=0.8, seed=3)
    prefs = traffic_log.preferences(recs)
    assert len(prefs) == 400 and set(prefs["source"]) == {"verdict"}
    won = np.where(prefs["outcome"] == 1.0, prefs["model_a"], prefs["model_b"])
    for task, best in WINNERS.items():
        share = (won[prefs["task"] == task] == best).mean()
        assert 0.7 < share < 0.9
    assert prefs["created_at"].is_monotonic_increasing


def test_pairs_needed_reads_the_curve():
    curve = pd.DataFrame(
        [
            (n, s, t, v)
            for n, vals in {
                0: (0.0, 1.0),
                10: (0.95, 0.8),
                50: (0.92, 0.93),
                100: (0.97, 0.99),
            }.items()
            for s in (0, 1)
            for t, v in zip(("chat", "code_generation"), vals, strict=True)
        ],
        columns=["n_pairs", "seed", "task", "to_winner"],
    )
    assert pairs_needed(curve, 0.9) == 50
    assert pairs_needed(curve, 0.995) is None
    assert curve_table(curve).loc[50, "chat"] == "0.92 (0.92)"


class _ProbsRouter:
    """Task probabilities by prompt text (a fake classifier for `task_recognition`)."""

    def __init__(self, probs: dict[str, dict[str, float]]):
        self.probs = probs

    def task_proba(self, prompts):
        from evals.our_router import TASK_NAMES

        return np.array([[self.probs[p].get(t, 0.0) for t in TASK_NAMES] for p in prompts])


def test_task_recognition_counts_the_prompts_the_classifier_tells_apart():
    probs = {
        "p1": {"code_generation": 0.9, "chat": 0.1},  # right, on top
        "p2": {"code_generation": 0.3, "open_qa": 0.6, "chat": 0.1},  # not on top, above chat
        "p3": {"code_generation": 0.1, "chat": 0.2, "open_qa": 0.7},  # below chat
        "p4": {"chat": 0.5, "creative_writing": 0.5},  # a tie for the top counts as on top
        "p5": {"chat": 0.9, "code_generation": 0.1},
    }
    prompts = pd.DataFrame(
        {
            "prompt": list(probs),
            "task": ["code_generation"] * 3 + ["chat"] * 2,
            "split": ["held_out"] * 3 + ["held_out", "train"],
        }
    )
    got = task_recognition(_ProbsRouter(probs), prompts)
    code = got.loc[("held_out", "code_generation")]
    assert code["prompts"] == 3
    assert code["top_task"] == pytest.approx(1 / 3)
    assert code["above_rivals"] == pytest.approx(2 / 3)
    assert got.loc[("held_out", "chat")].tolist() == [1, 1.0, 1.0]
    assert got.loc[("train", "chat")].tolist() == [1, 1.0, 1.0]


def test_the_learning_curve_learns_the_task_winners(tiny_router):
    from evals.traffic_eval import pool_cards

    prompts = task_prompts()
    assert set(prompts["task"]) == {"code_generation", "chat"}
    assert {"train", "held_out"} == set(prompts["split"])
    curve = learning_curve(
        tiny_router, prompts, sizes=(0, 200), seeds=(0,), cards=pool_cards(), max_eval=40
    )
    share = curve.set_index(["n_pairs", "task"])["to_winner"]
    assert share[(0, "code_generation")] < 0.5  # the base router sends coding to the dear model
    assert share[(200, "code_generation")] >= 0.8 and share[(200, "chat")] >= 0.8


# ------------------------------------------------------------------------------ the whole loop


def test_run_loop_judges_exports_trains_and_promotes(tiny_router, tmp_path, monkeypatch):
    from evals import our_router
    from evals.loop import run_loop
    from evals.suite import SuiteConfig

    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home"))
    prompts = task_prompts()
    recs = synthetic_records(prompts[prompts["split"] == "train"], WINNERS, 160, seed=5)
    recs += synthetic_records(
        prompts[prompts["split"] == "held_out"],
        WINNERS,
        40,
        seed=6,
        start=pd.Timestamp("2026-11-20", tz="UTC").to_pydatetime(),  # fmt: skip
    )
    pairs = []
    task_of = dict(zip(prompts["prompt"], prompts["task"], strict=True))
    for r in recs:  # unjudged captured pairs, as the gateway stores them
        pairs.append({k: v for k, v in r.items() if k != "kind"} | {"verdicts": [], "votes": []})

    def judge(model, messages):
        """Scripted judge: the task's synthetic winner's answer is better."""
        user = messages[-1]["content"]
        question = user.split("[User Question]\n", 1)[1].split("\n\n[The Start", 1)[0]
        best = WINNERS[task_of[question]]
        first = user.split("[The Start of Assistant A's Answer]\n", 1)[1].split("\n", 1)[0]
        return "[[A]]" if best in first else "[[B]]"

    models = [
        {"id": A, "pricing": {"input_micros_per_mtok": 100, "output_micros_per_mtok": 300}},
        {"id": B, "pricing": {"input_micros_per_mtok": 1000, "output_micros_per_mtok": 3000}},
    ]
    gw = FakeGateway(pairs=pairs, judge=judge, models=models)
    cfg = SuiteConfig.load(train_datasets=["routellm_gsm8k"]).only(["gsm8k"]).capped(40)
    result = run_loop(
        "http://gateway.test",
        "inf_test_key",
        cfg=cfg,
        router=tiny_router,
        promotion=PromotionConfig(require_traffic=True),
        transport=gw.transport(),
    )
    assert result.judge.judge == B and result.judge.judged == 200
    assert all(p["verdicts"][0]["judge"] == B for p in gw.pairs)
    assert result.traffic.counts["labels_verdict"] == 200
    assert traffic_log.latest_version() == result.traffic.version
    assert result.train["traffic_win_rate"] >= 0.8
    assert result.decision is not None and result.decision.promote
    champion = our_router.load("models:/inferroute@champion")
    assert champion.preferences is not None
    held = prompts[prompts["split"] == "held_out"]
    code = held[held["task"] == "code_generation"]["prompt"].head(20)
    from evals.traffic_eval import pool_cards

    picks = [
        champion.route([{"role": "user", "content": p}], [A, B], "quality", cards=pool_cards())
        for p in code
    ]
    assert np.mean([d.model == A for d in picks]) >= 0.8
    # a second round on the same traffic: the champion is measured on the same split, no gain
    again = run_loop(
        "http://gateway.test",
        "inf_test_key",
        cfg=cfg,
        router=tiny_router,
        promotion=PromotionConfig(require_traffic=True, traffic_margin=0.01),
        transport=gw.transport(),
    )
    assert again.judge.judged == 0 and again.traffic.version == result.traffic.version
    assert again.decision is not None and not again.decision.promote
    assert promote.alias_version("champion") == result.decision.candidate


def test_evaluate_s_own_traffic_numbers_rise_with_the_traffic_term(
    tiny_router, tmp_path, monkeypatch
):
    from evals import experiments, our_router
    from evals.traffic_eval import pool_cards

    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home"))
    prompts = task_prompts()
    older = synthetic_records(prompts[prompts["split"] == "train"], WINNERS, 200, seed=1)
    newer = synthetic_records(
        prompts[prompts["split"] == "held_out"], WINNERS, 50, p_win=1.0, seed=2,
        start=pd.Timestamp("2026-11-20", tz="UTC").to_pydatetime(),
    )  # fmt: skip
    v = traffic_log.write_version(older + newer)
    version, base = experiments.own_traffic_metrics(tiny_router, "latest")
    assert version == v.version and base["traffic_pairs"] == 50
    prefs = traffic_log.load_preferences(v.version)
    tuned = our_router.fit_traffic(tiny_router, prefs[prefs["split"] == "train"], pool_cards())
    _, after = experiments.own_traffic_metrics(tuned, v.version)
    assert after["traffic_win_rate"] >= 0.9 > base["traffic_win_rate"]
    # the two models win about equally often here: no strong-weak gap, so no APGR
    assert np.isnan(after["traffic_apgr"]) or after["traffic_apgr"] > base["traffic_apgr"]
