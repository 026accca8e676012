"""The task classifier: source weights, temperature calibration, lower confidence off the data."""

from __future__ import annotations

import numpy as np
import pytest

from evals.metrics import ece
from inferroute.classifier import TaskClassifier, group_weights, source_weights, support
from inferroute.config import RouterConfig
from inferroute.taxonomy import TASK_NAMES


def test_real_prompts_carry_their_share_and_classes_are_balanced_within_a_group() -> None:
    tasks = ["closed_qa"] * 900 + ["math"] * 60 + ["chat"] * 30 + ["creative_writing"] * 10
    real = np.array([False] * 960 + [True] * 40)
    w = source_weights(tasks, real, real_share=0.5)
    assert w.mean() == pytest.approx(1.0)
    assert w[real].sum() == pytest.approx(w[~real].sum())
    y = np.array(tasks)
    assert w[~real & (y == "closed_qa")].sum() == pytest.approx(w[~real & (y == "math")].sum())
    assert w[real & (y == "chat")].sum() == pytest.approx(w[real & (y == "creative_writing")].sum())
    only_bench = source_weights(tasks[:960], real[:960], real_share=0.5)
    assert only_bench.mean() == pytest.approx(1.0)  # an empty group gives its share away


def test_each_group_carries_its_share_and_absent_groups_give_theirs_away() -> None:
    tasks = ["closed_qa"] * 600 + ["math"] * 200 + ["chat"] * 150 + ["open_qa"] * 50
    groups = ["benchmark"] * 800 + ["real"] * 100 + ["pseudo"] * 100
    shares = {"real": 0.5, "benchmark": 0.3, "pseudo": 0.2}
    w = group_weights(tasks, groups, shares)
    g, y = np.array(groups), np.array(tasks)
    assert w.mean() == pytest.approx(1.0)
    for name, share in shares.items():
        assert w[g == name].sum() / w.sum() == pytest.approx(share)
    assert w[(g == "benchmark") & (y == "closed_qa")].sum() == pytest.approx(
        w[(g == "benchmark") & (y == "math")].sum()
    )
    two = group_weights(tasks[:900], groups[:900], shares)  # no pseudo rows: 0.5 : 0.3 renormalised
    assert two[np.array(groups[:900]) == "real"].sum() / two.sum() == pytest.approx(0.5 / 0.8)


def test_self_training_learns_words_seen_only_in_unlabelled_prompts() -> None:
    """Labelled prompts say "poem" or "translate"; unlabelled ones pair those words with "haiku"
    and "français". The self-trained classifier files prompts with only the new words under the
    task their companions carry; the one fitted on the labels alone has nothing to go on."""
    import pandas as pd

    from inferroute.training import fit_task_classifier

    rng = np.random.default_rng(0)
    fill = ["the", "a", "please", "about", "sea", "moon", "cats", "today", "my", "for"]

    def prompts(words: list[str], n: int) -> list[str]:
        return [" ".join([*words, *rng.choice(fill, 4)]) for _ in range(n)]

    texts = prompts(["write", "poem"], 60) + prompts(["translate", "text"], 60)
    labels = pd.DataFrame(
        {"task": ["creative_writing"] * 60 + ["translation"] * 60, "dataset": "autoj_scenarios"}
    )
    u_texts = prompts(["poem", "haiku"], 200) + prompts(["translate", "français"], 200)
    dense, u_dense = np.zeros((len(texts), 2)), np.zeros((len(u_texts), 2))
    cfg = RouterConfig(clf_hash_features=2**12, clf_bank_size=0, clf_pseudo_min_conf=0.6)
    test = ["haiku haiku", "français français"]
    plain = fit_task_classifier(dense, texts, labels, cfg, 0, (u_dense, u_texts))
    self_trained = fit_task_classifier(
        dense, texts, labels, cfg.with_overrides(clf_pseudo_share=0.3), 0, (u_dense, u_texts)
    )
    creative, translation = TASK_NAMES.index("creative_writing"), TASK_NAMES.index("translation")
    p_plain = plain.predict_proba(np.zeros((2, 2)), test)
    p_self = self_trained.predict_proba(np.zeros((2, 2)), test)
    assert abs(p_plain[0, creative] - p_plain[1, creative]) < 0.2  # no evidence either way
    assert p_self[0].argmax() == creative and p_self[1].argmax() == translation
    assert p_self[0, creative] > p_plain[0, creative] + 0.2


def _overfit_data(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Two informative dimensions, 300 noise dimensions, 25% label noise: a weakly regularised
    logistic regression fits the noise and is over-confident on new prompts."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    x = np.hstack([centres[y] + rng.normal(size=(n, 2)), rng.normal(size=(n, 300))])
    flip = rng.random(n) < 0.25
    y = np.where(flip, rng.integers(0, 3, n), y)
    return x.astype(np.float32), [TASK_NAMES[i] for i in y]


def test_temperature_calibration_lowers_the_expected_calibration_error() -> None:
    x, y = _overfit_data(900, 0)
    xt, yt = _overfit_data(2000, 1)
    texts, test_texts = [""] * len(y), [""] * len(yt)
    kwargs = {"c": 50.0, "n_hash": 16, "seed": 0, "refit": False}
    eces = {}
    for calibration in ("none", "temperature"):
        clf = TaskClassifier.fit(x, texts, y, calibration=calibration, **kwargs)
        p = clf.predict_proba(xt, test_texts)
        correct = (np.array(TASK_NAMES)[p.argmax(1)] == np.array(yt)).astype(float)
        eces[calibration] = ece(p.max(1), correct)
    assert eces["none"] > 0.1
    assert eces["temperature"] < eces["none"] / 2


def test_support_is_linear_between_the_cuts_and_mixes_towards_uniform() -> None:
    sims = np.array([0.1, 0.5, 0.7, 0.9])
    assert support(sims, 0.5, 0.7).tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0])
    assert support(np.array([0.6]), 0.5, 0.7)[0] == pytest.approx(0.5)


def test_far_from_the_training_data_the_trained_router_is_less_confident(tiny_router) -> None:
    inside = [
        "Write a Python function that returns the n-th Fibonacci number.",
        "Write an email to my landlord asking to fix the heating.",
        "Translate 'good morning, how are you?' into French.",
    ]
    outside = [
        "zxqv blorf wendip kratuul snargle fweep oompt vashk trell",
        "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ ᎠᏂᏴᏫᏯ ᏧᏂᎸᏫᏍᏓᏁᏗ ᎤᏂᏲᎯᏍᏗ",
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo=",
    ]
    conf_in = [c for _, c in tiny_router.classify(inside)]
    conf_out = [c for _, c in tiny_router.classify(outside)]
    assert max(conf_out) < min(conf_in)
    clf = tiny_router.classifier
    _, dense = tiny_router.features(outside + inside)
    s = clf.support(dense, outside + inside)
    assert s[:3].max() < 1.0 and s[3:].min() == 1.0


def test_a_class_drawn_wholly_into_the_calibration_split_is_learned_by_the_refit() -> None:
    x, y = _overfit_data(300, 2)
    rare = TASK_NAMES[5]
    x = np.vstack([x, np.full((1, x.shape[1]), 4.0, np.float32)])
    y = [*y, rare]
    # a seed whose calibration draw (20%, the classifier's own rule) takes the rare prompt
    seed = next(s for s in range(100) if np.random.default_rng(s).random(len(y))[-1] < 0.2)
    clf = TaskClassifier.fit(
        x, [""] * len(y), y, c=1.0, n_hash=16, calibration="temperature", seed=seed, refit=True
    )
    assert TASK_NAMES[int(clf.predict_proba(x[-1:], [""]).argmax())] == rare


def test_features_hashed_once_serve_every_classifier_with_the_same_settings() -> None:
    texts = ["write a poem about rain", "translate hello into french", "fix this python bug"] * 20
    y = ["creative_writing", "translation", "code_generation"] * 20
    x = np.zeros((len(y), 2), np.float32)
    kw = {"c": 1.0, "calibration": "none", "seed": 0}
    a = TaskClassifier.fit(x, texts, y, n_hash=64, **kw)
    b = TaskClassifier.fit(x[:30], texts[:30], y[:30], n_hash=64, **kw)
    other = TaskClassifier.fit(x, texts, y, n_hash=128, **kw)  # other buckets: hashed anew
    new = ["a poem on snow", "translate goodbye", "a python bug"]
    feats = a.text_features(new)
    for clf in (a, b, other):
        np.testing.assert_array_equal(
            clf.predict_proba(x[:3], new, feats), clf.predict_proba(x[:3], new)
        )


def test_a_long_prompt_is_hashed_by_its_head_and_tail_only() -> None:
    texts = ["write a poem about rain", "translate hello into french", "fix this python bug"] * 20
    y = ["creative_writing", "translation", "code_generation"] * 20
    x = np.zeros((len(y), 2), np.float32)
    kw = {"c": 1.0, "calibration": "none", "seed": 0, "n_hash": 64}
    clf = TaskClassifier.fit(x, texts, y, max_chars=200, **kw)
    whole = TaskClassifier.fit(x, texts, y, **kw)
    # a pasted text whose middle is all about translation, the request at its two ends
    long = "fix this python bug:\n" + "translate french " * 500 + "\nfix this python bug"
    head_tail = long[:150] + "\n" + long[-50:]
    np.testing.assert_allclose(
        clf.predict_proba(x[:1], [long]), clf.predict_proba(x[:1], [head_tail])
    )
    feats = whole.text_features([long])  # hashed whole: not what `clf` reads, so hashed anew
    np.testing.assert_allclose(
        clf.predict_proba(x[:1], [long], feats), clf.predict_proba(x[:1], [head_tail])
    )
    assert TASK_NAMES[int(whole.predict_proba(x[:1], [long]).argmax())] == "translation"
