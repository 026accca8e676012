"""Metrics against hand-computed cases."""

import warnings

import numpy as np
import pytest

from evals import metrics as M


def test_registry_declares_direction():
    assert M.get_metric("apgr").higher_is_better
    assert not M.get_metric("cpt").higher_is_better
    assert M.get_metric("aiq").higher_is_better
    with pytest.raises(KeyError, match="Supported metrics"):
        M.get_metric("nope")


X = [0, 25, 50, 75, 100]


def test_apgr_always_strong_is_one_always_weak_is_zero():
    assert M.apgr(X, [0.9] * 5, weak_perf=0.6, strong_perf=0.9) == pytest.approx(1.0)
    assert M.apgr(X, [0.6] * 5, weak_perf=0.6, strong_perf=0.9) == pytest.approx(0.0)


def test_apgr_linear_curve_is_half_and_hand_case():
    lin = [0.6, 0.675, 0.75, 0.825, 0.9]
    assert M.apgr(X, lin, 0.6, 0.9) == pytest.approx(0.5)
    # trapezoid of PGR values [0, .5, 1, 1, 1] over quarters = (.25+.75+1+1)/4 = 0.75
    assert M.apgr(X, [0.6, 0.75, 0.9, 0.9, 0.9], 0.6, 0.9) == pytest.approx(0.75)


def test_random_router_apgr_near_half():
    rng = np.random.default_rng(0)
    n = 20000
    strong = rng.random(n) < 0.8
    weak = rng.random(n) < 0.6
    pct, perf = M.threshold_sweep(rng.random(n), strong, weak)
    assert pct[0] == 0.0 and pct[-1] == 100.0
    assert M.apgr(pct, perf, weak.mean(), strong.mean()) == pytest.approx(0.5, abs=0.03)
    assert M.cpt(pct, perf, weak.mean(), strong.mean(), 0.5) == pytest.approx(50, abs=4)
    assert M.cpt(pct, perf, weak.mean(), strong.mean(), 0.8) == pytest.approx(80, abs=4)


def test_oracle_sweep_beats_random_and_cpt_hand_case():
    strong = np.array([1, 1, 1, 0, 1, 0, 1, 1, 1, 1])
    weak = np.array([1, 0, 1, 0, 0, 0, 1, 1, 1, 0])
    oracle_win = strong - weak  # 1 where only the strong model is right
    pct, perf = M.threshold_sweep(oracle_win, strong, weak)
    assert M.apgr(pct, perf, weak.mean(), strong.mean()) > 0.5
    # curve 0% -> .5, 30% -> .8, 100% -> .8: half the gap (0.65) at 15%
    assert M.cpt([0, 30, 100], [0.5, 0.8, 0.8], 0.5, 0.8, 0.5) == pytest.approx(15.0)


def test_hull_and_aiq_hand_built():
    cost = [0, 1, 2, 3, 1.5]
    qual = [0.2, 0.5, 0.6, 0.55, 0.3]
    hull = M.non_decreasing_convex_hull(cost, qual)
    np.testing.assert_allclose(hull, [[0, 0.2], [1, 0.5], [2, 0.6]])
    # areas: (0.2+0.5)/2 + (0.5+0.6)/2 + 0.6 (flat to 3) = 1.5 over range 3
    assert M.aiq(cost, qual, c_min=0, c_max=3) == pytest.approx(0.5)
    # RouterBench's default range ends at the hull's last point: 0.9 over range 2
    assert M.aiq(cost, qual) == pytest.approx(0.45)
    # a point under a chord is lifted onto it: (1, 0.3) lies under (0,0)-(2,1)
    np.testing.assert_allclose(
        M.non_decreasing_convex_hull([0, 1, 2], [0, 0.3, 1]), [[0, 0], [2, 1]]
    )
    # explicit range: nothing reachable below the cheapest point (cost 1)
    assert M.aiq([1, 2], [0.4, 0.4], c_min=0, c_max=2) == pytest.approx(0.2)


def test_cost_quality_curve_extremes():
    pred = np.array([[0.2, 0.9], [0.8, 0.9]])
    true = np.array([[0.0, 1.0], [1.0, 1.0]])
    cost = np.array([[1.0, 10.0], [1.0, 10.0]])
    c, q = M.curve_means(*M.routed_outcomes(pred, true, cost, [1.0, 10.0], [1e-6, 1e6]))
    assert (c[0], q[0]) == (1.0, 0.5)  # unwilling to pay: always the cheap model
    assert (c[1], q[1]) == (10.0, 1.0)  # pays anything: best predicted


def test_routed_outcomes_are_the_curve_per_prompt():
    pred = np.array([[0.2, 0.9], [0.8, 0.9], [0.9, 0.1]])
    true = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    cost = np.array([[1.0, 10.0], [1.0, 10.0], [1.0, 10.0]])
    c, q = M.routed_outcomes(pred, true, cost, [1.0, 10.0], [1e-6, 1e6])
    assert c.tolist() == [[1.0, 1.0, 1.0], [10.0, 10.0, 1.0]]
    assert q.tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    mc, mq = M.curve_means(c, q)
    np.testing.assert_allclose(mc, [1.0, 7.0])
    np.testing.assert_allclose(mq, [2 / 3, 1.0])
    with warnings.catch_warnings():  # no costs known (AlpacaEval 2): NaN cost, quietly
        warnings.simplefilter("error")
        nc, nq = M.curve_means(np.full((2, 3), np.nan), q)
    assert np.isnan(nc).all() and nq.tolist() == [2 / 3, 1.0]


def test_aiq_bootstrap_is_paired_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    true = (rng.random((300, 3)) < [0.3, 0.6, 0.9]).astype(float)
    cost = np.tile([1.0, 2.0, 10.0], (300, 1))
    exp, w = cost[0], [1e-3, 0.05, 0.2, 1.0, 1e3]
    good = M.routed_outcomes(true + 0.01 * np.arange(3), true, cost, exp, w)  # knows the truth
    noise = M.routed_outcomes(rng.random((300, 3)), true, cost, exp, w)
    draws = M.aiq_bootstrap({"good": good, "same": good, "noise": noise}, c_max=10.0, n_boot=200)
    assert set(draws) == {"good", "same", "noise"} and draws["good"].shape == (200,)
    np.testing.assert_array_equal(draws["good"], draws["same"])  # same resamples for every router
    point = M.aiq(*M.curve_means(*good), c_min=0.0, c_max=10.0)
    lo, hi = np.percentile(draws["good"], [2.5, 97.5])
    assert lo < point < hi and hi - lo < 0.1
    assert (draws["good"] - draws["noise"]).min() > 0  # the oracle leads on every resample


def test_classifier_metrics():
    y = ["a", "a", "b", "b", "c"]
    p = ["a", "b", "b", "b", "a"]
    cm = M.confusion_matrix(y, p, ["a", "b", "c"])
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # F1: a = 2*1/(2+2)=.5, b = 2*2/(3+2)=.8, c = 0 -> mean .4333
    assert M.macro_f1(y, p) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert M.ece([0.9, 0.9, 0.1, 0.1], [1, 1, 0, 0]) == pytest.approx(0.1)
    assert M.ece([0.75] * 4, [1, 1, 1, 0]) == pytest.approx(0.0)
    per = M.per_class_f1(y, p)
    # a: precision 1/2, recall 1/2; b: precision 2/3, recall 1; c: never predicted
    assert per["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert per["c"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})


def test_routing_time_percentiles():
    out = M.routing_time_percentiles(np.arange(1, 101), (50, 99))
    assert out["p50"] == pytest.approx(50.5)
    assert out["p99"] == pytest.approx(99.01)
