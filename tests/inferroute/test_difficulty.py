"""Complexity cuts (inferroute.difficulty.cuts) on a synthetic labelled set."""

from __future__ import annotations

import numpy as np
import pytest

from inferroute.difficulty import cuts


def _labelled(n: int = 4000):
    """A noisy difficulty score over five levels; level 0 (20%) is simple, levels 3-4 (30%)
    complex: the levels overlap, as a regressor's predictions on real labels do."""
    rng = np.random.default_rng(0)
    level = rng.choice(5, size=n, p=[0.2, 0.25, 0.25, 0.2, 0.1])
    pred = level / 4 + rng.normal(0, 0.3, n)
    return pred, level == 0, level >= 3


def test_prevalence_cuts_call_as_many_prompts_simple_and_complex_as_are_labelled_so() -> None:
    pred, simple, complex_ = _labelled()
    lo, hi = cuts(pred, simple, complex_, "prevalence")
    assert (pred < lo).mean() == pytest.approx(simple.mean(), abs=0.005)
    assert (pred >= hi).mean() == pytest.approx(complex_.mean(), abs=0.005)
    # Youden's J ignores the prevalence: with overlapping levels it calls far more complex
    y_lo, y_hi = cuts(pred, simple, complex_, "youden")
    assert (pred >= y_hi).mean() > complex_.mean() + 0.05
    assert lo < hi and y_lo < y_hi


def test_an_unknown_rule_is_an_error() -> None:
    pred, simple, complex_ = _labelled(100)
    with pytest.raises(ValueError, match="youden or prevalence"):
        cuts(pred, simple, complex_, "median")
