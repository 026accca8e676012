"""The task classifier: source weights, temperature calibration, lower confidence off the data."""

from __future__ import annotations

import numpy as np
import pytest

from evals.metrics import ece
from inferroute.classifier import TaskClassifier, source_weights, support
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
