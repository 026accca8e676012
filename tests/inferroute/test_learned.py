"""The learned router's parts on small real data (RouterBench + RouteLLM GSM8K, task labels)."""

from __future__ import annotations

import numpy as np

import inferroute
from inferroute.config import TINY
from tests.inferroute.conftest import GPT4, MISTRAL7B, MIXTRAL


def _held_out(small_data, dataset):
    scores, _, split = small_data
    sub = scores[(scores["dataset"] == dataset) & (scores["prompt_id"].map(split) == "test")]
    piv = sub.pivot_table(index="prompt_id", columns="model", values="score")
    texts = sub.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"].loc[piv.index]
    return list(texts), piv


def test_classifier_recognises_held_out_prompts_with_calibrated_confidence(tiny_router, small_data):
    texts, _ = _held_out(small_data, "routellm_gsm8k")
    out = tiny_router.classify(texts[:100])
    tasks = [t for t, _ in out]
    assert tasks.count("math") >= 80  # GSM8K word problems
    conf = np.array([c for _, c in out])
    assert ((conf > 0) & (conf <= 1)).all()
    probs = tiny_router.task_proba(texts[:5])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)


def test_quality_ranks_models_and_prompts_on_held_out_data(tiny_router, small_data):
    texts, piv = _held_out(small_data, "routerbench_zs")
    q = tiny_router.predict_quality(texts, [GPT4, MIXTRAL, MISTRAL7B])
    assert q.shape == (len(texts), 3) and ((q >= 0) & (q <= 1)).all()
    # GPT-4 beats Mistral-7B on RouterBench; the predictions must say so, per prompt on average
    assert q[:, 0].mean() > q[:, 2].mean() + 0.1
    # and prompts predicted easier for Mistral-7B are in fact solved more often
    actual = piv[MISTRAL7B].to_numpy()
    top = q[:, 2] >= np.median(q[:, 2])
    assert actual[top].mean() > actual[~top].mean()


def test_catalog_models_get_proxy_or_prior_profiles(tiny_router):
    prompts = ["Write a Python function to merge two sorted lists.", "What is 17 * 23?"]
    q = tiny_router.predict_quality(prompts, [GPT4, "Qwen/Qwen3-32B", "local/tiny-qwen"])
    np.testing.assert_allclose(q[:, 0], q[:, 1])  # Qwen3-32B's declared proxy is GPT-4-1106
    assert (q[:, 2] < 0.1).all()  # a randomly initialised tiny model: prior 0.02
    d = tiny_router.route(
        [{"role": "user", "content": prompts[0]}], ["Qwen/Qwen3-14B", "local/tiny-a"], "quality"
    )
    assert d.model == "Qwen/Qwen3-14B"


def test_complexity_follows_data_difficulty(tiny_router, small_data):
    texts, piv = _held_out(small_data, "routerbench_zs")
    c = tiny_router.complexity(texts)
    solved = piv.mean(axis=1).to_numpy()  # share of models that solve the prompt
    hard = c >= np.median(c)
    assert solved[hard].mean() < solved[~hard].mean()


def test_training_is_deterministic_for_a_fixed_seed(small_data):
    scores, labels, split = small_data
    train = scores[scores["prompt_id"].map(split) == "train"]
    cfg = TINY.with_overrides(knn_max_prompts=400, clf_max_per_class=40)
    a = inferroute.train(train, labels, cfg)
    b = inferroute.train(train, labels, cfg)
    prompts = ["Translate 'good morning' to French.", "Solve 3x + 5 = 20 for x."]
    np.testing.assert_array_equal(
        a.predict_quality(prompts, [GPT4, MIXTRAL]), b.predict_quality(prompts, [GPT4, MIXTRAL])
    )
    assert a.classify(prompts) == b.classify(prompts) and a.version == b.version


def test_classifier_cross_validation_predicts_every_labelled_prompt_once(tiny_router, small_data):
    from evals import our_router

    _, labels, _ = small_data
    # the benchmark label sets (the Auto-J real prompts, listed first, have their own evaluation in
    # tests/evals/test_task_eval.py)
    labels = labels[labels["task"].notna() & ~labels["dataset"].str.startswith("autoj")]
    sample = labels.groupby("task").head(12)  # rare and frequent task types alike
    out = our_router.classifier_cv(tiny_router, sample, folds=3, max_per_class=12)
    assert out["n"] == len(sample)
    supports = {t: m["support"] for t, m in out["per_class"].items()}
    assert supports == sample["task"].value_counts().astype(float).to_dict()
    assert out["per_class"]["math"]["f1"] > 0.5 and 0 <= out["ece"] <= 1
