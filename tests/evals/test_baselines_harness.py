"""Baselines on a small real slice (RouterBench 0-shot subset, 11 models with costs) through the
harness: learned baselines beat random, the oracle beats everything, APGR/AIQ behave."""

from __future__ import annotations

import numpy as np
import pytest

from evals.baselines import BASELINES, LEARNED, get_baseline
from evals.harness import BenchmarkSpec, reference_results, run_eval

MULTI = BenchmarkSpec("routerbench", ("routerbench_zs",), "multi")
PAIR = BenchmarkSpec(
    "routerbench_pair",
    ("routerbench_zs",),
    "pair",
    strong="GPT-4-1106-preview",
    weak="Mixtral-8x7B-Instruct",
)


@pytest.fixture(scope="module")
def slice_df(rb_slice):
    return rb_slice


@pytest.fixture(scope="module")
def fitted(slice_df):
    train = slice_df[slice_df["split"] == "train"]
    return {name: get_baseline(name).fit(train) for name in LEARNED}


@pytest.fixture(scope="module")
def results(slice_df, fitted):
    out = {
        name: run_eval(model, slice_df, [MULTI, PAIR], name=name, timing_prompts=3)
        for name, model in fitted.items()
    }
    out.update(reference_results(slice_df, [MULTI, PAIR]))
    return out


def test_registry_lists_names_on_error():
    assert set(LEARNED) <= set(BASELINES)
    with pytest.raises(KeyError, match="Supported baselines"):
        get_baseline("nope")


def test_predict_quality_contract(slice_df, fitted):
    prompts = list(slice_df["prompt"].unique()[:5])
    models = ["GPT-4-1106-preview", "never-seen-model", "Mixtral-8x7B-Instruct"]
    for name, model in fitted.items():
        q = model.predict_quality(prompts, models)
        assert q.shape == (5, 3)
        assert np.all((q >= 0) & (q <= 1)), name
        assert np.all(q[:, 1] == 0.5) or name == "random"  # unknown model: uninformative
        if name != "random":
            assert q[:, 0].std() > 0, f"{name} ignores the prompt"
    train = slice_df[slice_df["split"] == "train"]
    again = get_baseline("mf").fit(train).predict_quality(prompts, models)
    np.testing.assert_allclose(fitted["mf"].predict_quality(prompts, models), again, atol=1e-6)


def test_learned_baselines_beat_random_on_aiq(results):
    rand = results["random"].benchmarks["routerbench"].metrics["aiq"]
    oracle = results["oracle"].benchmarks["routerbench"].metrics["aiq"]
    zero = results["zero_router"].benchmarks["routerbench"].metrics["aiq"]
    assert oracle > zero > rand
    for name in ("knn", "mf", "bert_head", "sw_ranking"):
        aiq = results[name].benchmarks["routerbench"].metrics["aiq"]
        assert rand < aiq <= oracle, (name, aiq, rand)


def test_aiq_intervals_and_the_lead_column(results):
    from evals import experiments, report

    experiments.add_aiq_intervals(results, ours_name="oracle", n_boot=200)
    m = results["random"].benchmarks["routerbench"].metrics
    assert m["aiq_lo"] < m["aiq"] < m["aiq_hi"]
    assert 0 < m["aiq_lead_lo"] < m["aiq_lead_hi"] and m["aiq_lead_p"] == 0.0
    assert "aiq_lead_lo" not in results["oracle"].benchmarks["routerbench"].metrics
    assert "aiq_lo" not in results["random"].benchmarks["routerbench_pair"].metrics
    payload = {n: {b: br.metrics for b, br in r.benchmarks.items()} for n, r in results.items()}
    table = "\n".join(report._multi_table("routerbench", payload))
    assert "ours − this AIQ, 95% CI" in table and "paired bootstrap" in table


def test_pair_metrics_are_consistent(results):
    m = results["oracle"].benchmarks["routerbench_pair"].metrics
    assert m["apgr"] > 1.0  # the oracle beats always-strong: it recovers more than the gap
    r = results["random"].benchmarks["routerbench_pair"].metrics
    assert 0.2 < r["apgr"] < 0.8
    assert r["strong_quality"] > r["weak_quality"]
    single = results["single:GPT-4-1106-preview"].benchmarks["routerbench"].metrics
    assert single["quality"] == pytest.approx(r["strong_quality"])
    assert results["knn"].routing_ms["p50"] > 0
