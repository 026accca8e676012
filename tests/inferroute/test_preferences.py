"""The traffic preference term: a Bradley-Terry residual that makes the router route a task to the
model the operator's traffic prefers there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import inferroute
from inferroute.preferences import PreferenceRows, PreferenceTerm, fit_term, outcome
from inferroute.training import fit_preferences
from inferroute.types import ModelCard

X, Y = "pool/x", "pool/y"
# Equal prices and latencies: the decision is the predicted quality's alone. Y is the stronger
# model by its card (profiled from GPT-4-1106); X from Mixtral.
CARDS = {
    X: ModelCard(X, 1.0, 1.0, quality_proxy="Mixtral-8x7B-Instruct"),
    Y: ModelCard(Y, 1.0, 1.0, quality_proxy="GPT-4-1106-preview"),
}
CODE = [
    "Write a Python function that reverses a linked list.",
    "Fix the bug in this JavaScript: for (i = 0; i < n; i++) { sum += arr[i] }",
    "Write a SQL query that returns the ten best-selling products per month.",
    "Implement binary search in C++ and explain its complexity.",
    "Write a bash script that renames every .txt file in a folder to .md.",
    "Refactor this Python class to use dataclasses: class P: def __init__(self, x): self.x = x",
]
CHAT = [
    "Hi! How are you doing today?",
    "Let's role-play: you are a pirate captain and I am a new deckhand.",
    "I'm bored, can you just chat with me for a bit about your favourite films?",
    "Pretend you are my grandmother telling me a bedtime story.",
    "Good morning! What a lovely day it is, don't you think?",
    "Can you be my friendly companion and talk with me about my day?",
]


def prefs_table(n: int, p_win: float = 0.85, seed: int = 0) -> pd.DataFrame:
    """n synthetic verdicts: X wins coding prompts, Y wins chat, with label noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        code = i % 2 == 0
        prompt = (CODE if code else CHAT)[int(rng.integers(len(CODE)))]
        best, other = (X, Y) if code else (Y, X)
        won = best if rng.random() < p_win else other
        a, b = (X, Y) if rng.random() < 0.5 else (Y, X)
        rows.append(
            {
                "prompt": prompt,
                "model_a": a,
                "model_b": b,
                "outcome": float(won == a),
                "source": "verdict",
            }  # fmt: skip
        )
    return pd.DataFrame(rows)


def route(router, prompt: str) -> str:
    return router.route([{"role": "user", "content": prompt}], [X, Y], "quality", cards=CARDS).model


def test_outcome_labels():
    assert [outcome(v) for v in ("a", "b", "tie", "up", "down", 1.0, 0.0, 0.5)] == [
        1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 0.0, 0.5,
    ]  # fmt: skip
    with pytest.raises(ValueError):
        outcome("maybe")


def test_fit_term_recovers_a_feature_dependent_winner():
    """Pure numpy: feature 1 says 'task 1'; model 0 wins on it, model 1 elsewhere."""
    rng = np.random.default_rng(0)
    n = 400
    task = rng.integers(2, size=n)
    phi = np.column_stack([np.ones(n), task, 1 - task]).astype(float)
    a = rng.integers(2, size=n)
    b = 1 - a
    p_a = np.where(task == 1, np.where(a == 0, 0.9, 0.1), np.where(a == 1, 0.9, 0.1))
    y = (rng.random(n) < p_a).astype(float)
    rows = PreferenceRows(phi, np.zeros(n), a, b, y, np.ones(n))
    term = fit_term(rows, ["m0", "m1"], logit_scale=4.0, l2=0.1)
    u = term.utilities(np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]]))
    assert u[0, 0] - u[0, 1] > 2.0 and u[1, 1] - u[1, 0] > 2.0  # ~ logit(0.9) = 2.2 each way
    shift = term.shift(np.array([[1.0, 1.0, 0.0]]), ["m1", "unknown", "m0"])
    assert shift[0, 1] == 0.0 and shift[0, 2] > 0 > shift[0, 0]
    assert shift[0, 0] == pytest.approx(-shift[0, 2])
    # one known model alone has nothing to be compared with
    assert not term.shift(np.ones((1, 3)), ["m0", "other"]).any()


def _gap_rows(seed: int, truth_scale: float | None) -> PreferenceRows:
    """Pairs of m0 / m1 on two tasks, m0 winning task 1 and m1 task 0 80% of the time, with a
    base quality gap q_a - q_b that decides the winner at `truth_scale` logits per unit of quality
    (None: the gap says nothing about who wins)."""
    rng = np.random.default_rng(seed)
    n = 2000
    task = rng.integers(2, size=n)
    phi = np.column_stack([np.ones(n), task]).astype(float)
    a = rng.integers(2, size=n)
    gap = rng.uniform(-0.3, 0.3, n)
    if truth_scale is None:
        p_a = np.where((task == 1) == (a == 0), 0.8, 0.2)
    else:
        p_a = 1.0 / (1.0 + np.exp(-truth_scale * gap))
    y = (rng.random(n) < p_a).astype(float)
    return PreferenceRows(phi, 4.0 * gap, a, 1 - a, y, np.ones(n))


def test_the_logit_scale_is_fitted_to_how_far_the_base_gap_predicts_the_traffic():
    task1 = np.array([[1.0, 1.0]])
    for seed in range(3):
        fixed = fit_term(_gap_rows(seed, None), ["m0", "m1"], 4.0, 1.0)
        assert fixed.logit_scale == 4.0
        blind = fit_term(_gap_rows(seed, None), ["m0", "m1"], 4.0, 1.0, fit_scale=True)
        assert blind.logit_scale < 1.0  # the gap does not predict the winner: it counts less
        # ... so the traffic moves a task-1 prompt further towards m0 than at the fixed scale
        moved = np.diff(blind.shift(task1, ["m1", "m0"]))[0]
        assert moved > 2 * np.diff(fixed.shift(task1, ["m1", "m0"]))[0] > 0
        agrees = fit_term(_gap_rows(seed, 4.0), ["m0", "m1"], 4.0, 1.0, fit_scale=True)
        assert 2.5 < agrees.logit_scale < 6.0
        steeper = fit_term(_gap_rows(seed, 12.0), ["m0", "m1"], 4.0, 1.0, fit_scale=True)
        assert steeper.logit_scale > 8.0


def test_feedback_rows_move_the_rated_model_alone():
    """Thumbs up on m0 and down on m1 (no pairs) still rank m0 first (the offset is shared)."""
    n = 200
    phi = np.ones((n, 1))
    a = np.array([0, 1] * (n // 2))
    y = (a == 0).astype(float)
    rows = PreferenceRows(phi, np.zeros(n), a, np.full(n, -1), y, np.ones(n))
    term = fit_term(rows, ["m0", "m1"], 4.0, 0.1)
    assert term.shift(np.ones((1, 1)), ["m0", "m1"])[0, 0] > 0


def test_the_term_routes_each_task_to_the_model_traffic_prefers(tiny_router):
    base = [route(tiny_router, p) for p in CODE + CHAT]
    assert base.count(Y) >= 10  # before: the stronger card wins almost everywhere
    router = fit_preferences(tiny_router, prefs_table(300), CARDS)
    assert router.preferences is not None and router.version.startswith(tiny_router.version)
    code = [route(router, p) for p in CODE]
    chat = [route(router, p) for p in CHAT]
    assert code.count(X) >= 5 and chat.count(Y) >= 5
    q = router.predict_quality(CODE[:2] + CHAT[:2], [X, Y], CARDS)
    assert (q[:2, 0] > q[:2, 1]).all() and (q[2:, 1] > q[2:, 0]).all()


def test_weights_and_the_prior_decide_how_far_little_data_moves_it(tiny_router):
    few = prefs_table(6, p_win=1.0)
    strong = fit_preferences(tiny_router, few, CARDS)
    none = fit_preferences(
        tiny_router.with_preferences(None, "v"),
        few.assign(source="feedback").assign(model_b=None),
        CARDS,
    )
    q0 = tiny_router.predict_quality(CODE[:1], [X, Y], CARDS)[0]
    q1 = strong.predict_quality(CODE[:1], [X, Y], CARDS)[0]
    assert (q1[0] - q1[1]) > (q0[0] - q0[1])  # six verdicts move the gap towards X
    empty = fit_preferences(tiny_router, few.iloc[:0], CARDS)
    assert empty.preferences is None and empty.version == tiny_router.version
    assert none.preferences is not None  # feedback-only rows fit a term as well


def test_the_embedding_features_option(tiny_router, tmp_path):
    emb = tiny_router.with_preferences(None, tiny_router.version)
    emb.config = emb.config.with_overrides(pref_embedding=True)
    router = fit_preferences(emb, prefs_table(300), CARDS)
    assert router.preferences.weights.shape[1] == 1 + 15 + 1 + emb.embedder.dim
    assert [route(router, p) for p in CODE].count(X) >= 5
    router.save(tmp_path / "r")
    back = inferroute.load_router(tmp_path / "r")
    np.testing.assert_allclose(
        back.predict_quality(CODE, [X, Y], CARDS), router.predict_quality(CODE, [X, Y], CARDS)
    )


def test_the_term_is_saved_and_loaded_with_the_router(tiny_router, tmp_path):
    router = fit_preferences(tiny_router, prefs_table(200), CARDS)
    router.save(tmp_path / "r")
    back = inferroute.load_router(tmp_path / "r")
    assert isinstance(back.preferences, PreferenceTerm)
    assert back.version == router.version
    prompts = CODE + CHAT
    np.testing.assert_allclose(
        back.predict_quality(prompts, [X, Y], CARDS), router.predict_quality(prompts, [X, Y], CARDS)
    )
    assert [route(back, p) for p in prompts] == [route(router, p) for p in prompts]
    tiny_router.save(tmp_path / "plain")
    assert inferroute.load_router(tmp_path / "plain").preferences is None
