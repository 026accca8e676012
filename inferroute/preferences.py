"""PreferenceTerm: a Bradley-Terry correction of predicted quality, learned from an operator's own
traffic (people's votes on side-by-side pairs, judge verdicts, thumbs up/down) on the pool's own
model ids.

The model. A prompt x has the features the router already computes, phi(x) = [1, task
probabilities, complexity]; each model m the traffic names gets a utility u_m(x) = w_m . phi(x),
a residual on top of the base router's predicted quality q_m(x) (its public data, or the catalog's
`quality_proxy` / `quality_prior` for a model it was not trained on):

    pair:      P(a beats b | x) = sigmoid(k * (q_a(x) - q_b(x)) + u_a(x) - u_b(x))
    feedback:  P(thumbs up | m, x) = sigmoid(k * q_m(x) + u_m(x) + c)

k is how many logits one unit of quality is worth: `pref_logit_scale`, or with `pref_fit_scale`
fitted too, as pref_logit_scale * exp(r) with r under the same L2 (where the traffic's winners
follow the base gap less than pref_logit_scale says, the gap counts for less); c a free offset (how
often people press "up" at all). A tie is half a win each way (a soft label of 0.5). Each row weighs
`pref_w_vote`, `pref_w_verdict` or `pref_w_feedback` by its source (a person's vote counts most).
An L2 penalty `pref_l2` on w pulls the residual to zero: with little traffic the base predictions
stand, with enough the traffic overrides them, task by task.

The routed quality: q'_m(x) = clip(q_m(x) + (u_m(x) - mean of u over the pool's models the term
knows) / k, 0, 1), so two known models' gap is the base gap plus the learned residual in quality
units, and models the term does not know are left as they were.

Fitting is a weighted logistic regression with a per-row offset (k * q), minimised with
scipy's L-BFGS: scikit-learn's LogisticRegression has no offset term, and the pair rows need
signed per-model coefficient blocks rather than one feature vector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

SOURCES = ("vote", "verdict", "feedback")  # the `source` column's values, strongest first


@dataclass(frozen=True, slots=True)
class PreferenceRows:
    """Labelled comparisons, aligned by row: features, base qualities, signs, labels, weights."""

    phi: FloatArray  # (R, F) prompt features
    offset: FloatArray  # (R,) k * (q_a - q_b) for pairs, k * q_m for feedback
    a: npt.NDArray[np.int64]  # (R,) model index of a (or of the rated model)
    b: npt.NDArray[np.int64]  # (R,) model index of b, -1 for feedback
    y: FloatArray  # (R,) 1 a wins / up, 0 b wins / down, 0.5 tie
    w: FloatArray  # (R,) row weight


@dataclass(frozen=True, slots=True)
class PreferenceTerm:
    models: tuple[str, ...]
    weights: FloatArray  # (M, F)
    offset: float  # c, the feedback offset
    logit_scale: float  # k
    n_rows: int  # labelled rows it was fitted on

    def index(self, model: str) -> int | None:
        try:
            return self.models.index(model)
        except ValueError:
            return None

    def utilities(self, phi: FloatArray) -> FloatArray:
        """(n, M) u_m(x) for every model the term knows."""
        out: FloatArray = phi @ self.weights.T
        return out

    def shift(self, phi: FloatArray, pool: Sequence[str]) -> FloatArray:
        """(n, len(pool)) what to add to the pool's predicted quality (0 for unknown models)."""
        out = np.zeros((phi.shape[0], len(pool)))
        cols = [(j, i) for j, m in enumerate(pool) if (i := self.index(m)) is not None]
        if len(cols) < 2:  # one known model alone: nothing to compare it with
            return out
        u = self.utilities(phi)[:, [i for _, i in cols]]
        centred = (u - u.mean(1, keepdims=True)) / self.logit_scale
        out[:, [j for j, _ in cols]] = centred
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "offset": self.offset,
            "logit_scale": self.logit_scale,
            "n_rows": self.n_rows,
        }

    @classmethod
    def from_saved(cls, meta: Mapping[str, Any], weights: FloatArray) -> PreferenceTerm:
        return cls(
            tuple(meta["models"]),
            np.asarray(weights, dtype=np.float64),
            float(meta["offset"]),
            float(meta["logit_scale"]),
            int(meta["n_rows"]),
        )


def fit_term(
    rows: PreferenceRows,
    models: Sequence[str],
    logit_scale: float,
    l2: float,
    fit_scale: bool = False,
) -> PreferenceTerm:
    """Maximum penalised likelihood of the model in the module docstring (L-BFGS). `fit_scale`:
    k is fitted too, as logit_scale * exp(r) with the L2 penalty on r (the prior: the configured
    k), so traffic in which the base quality gap predicts the winner less than k says counts it
    for less."""
    from scipy.optimize import minimize

    n_models, n_feat = len(models), rows.phi.shape[1]
    is_fb = rows.b < 0
    b_idx = np.where(is_fb, 0, rows.b)
    n_w = n_models * n_feat

    def unpack(theta: FloatArray) -> tuple[FloatArray, float, float]:
        r = float(theta[n_w + 1]) if fit_scale else 0.0
        return theta[:n_w].reshape(n_models, n_feat), float(theta[n_w]), r

    def loss(theta: FloatArray) -> tuple[float, FloatArray]:
        w, c, r = unpack(theta)
        ua = (rows.phi * w[rows.a]).sum(1)
        ub = np.where(is_fb, 0.0, (rows.phi * w[b_idx]).sum(1))
        base = np.exp(r) * rows.offset
        s = base + ua - ub + np.where(is_fb, c, 0.0)
        # weighted cross-entropy with soft labels, written stably: log(1 + e^s) - y * s
        nll = float((rows.w * (np.logaddexp(0.0, s) - rows.y * s)).sum())
        g = rows.w * (1.0 / (1.0 + np.exp(-s)) - rows.y)
        grad_w = np.zeros_like(w)
        np.add.at(grad_w, rows.a, g[:, None] * rows.phi)
        pair = ~is_fb
        np.add.at(grad_w, rows.b[pair], -g[pair, None] * rows.phi[pair])
        grad_w += l2 * w
        grad: list[FloatArray] = [grad_w.ravel(), np.array([g[is_fb].sum()])]
        if fit_scale:
            grad.append(np.array([(g * base).sum() + l2 * r]))
        penalty = 0.5 * l2 * (float((w * w).sum()) + r * r)
        return nll + penalty, np.concatenate(grad)

    theta0 = np.zeros(n_w + (2 if fit_scale else 1))
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    w, c, r = unpack(np.asarray(res.x, dtype=np.float64))
    k = float(logit_scale * np.exp(r))
    return PreferenceTerm(tuple(models), w, c, k, int(len(rows.y)))


def outcome(winner: Any) -> float:
    """A row's label from its `winner` / rating: a / up -> 1, b / down -> 0, tie -> 0.5."""
    text = str(winner).lower()
    if text in ("a", "up", "1", "1.0"):
        return 1.0
    if text in ("b", "down", "-1", "-1.0", "0", "0.0"):
        return 0.0
    if text in ("tie", "c", "0.5"):
        return 0.5
    raise ValueError(f"unknown preference outcome {winner!r}")
