"""Routing metrics: pure functions over arrays, each registered with the direction that is better.

Definitions follow their sources:
- APGR, CPT(x%): RouteLLM (lm-sys/RouteLLM `routellm/evals/evaluate.py`): the router's
  score curve over "% calls to the strong model" is integrated with the trapezoid rule over the
  curve's own x range and normalised by the same integral of the weak and strong models' scores;
  CPT(x%) = `np.interp` of the score reaching weak + x * (strong - weak) onto % strong calls.
- AIQ: RouterBench (withmartian/routerbench `evaluation/AIQ.py`, paper sec. 3): area under the
  non-decreasing convex hull of the (cost, quality) points, the hull carried flat to the right
  end of the cost range, divided by the cost range. With `c_min=0` and `c_max` = the largest cost
  of the compared routers this is exactly RouterBench's `calc_AIQ`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    fn: Callable[..., Any]
    higher_is_better: bool
    description: str


METRICS: dict[str, MetricSpec] = {}


def register_metric(
    name: str, *, higher_is_better: bool, description: str = ""
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        METRICS[name] = MetricSpec(name, fn, higher_is_better, description or (fn.__doc__ or ""))
        return fn

    return deco


def get_metric(name: str) -> MetricSpec:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}. Supported metrics: {sorted(METRICS)}") from None


def _f(a: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------- two-model (RouteLLM)


def threshold_sweep(
    strong_win: ArrayLike, strong_scores: ArrayLike, weak_scores: ArrayLike, num_results: int = 10
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """RouteLLM's threshold sweep: `pd.qcut` edges of the strong-win scores as thresholds.

    RouteLLM routes `win >= t` to the strong model at every edge but the last, and `win > t` at the
    last (so the sweep runs from all-strong to all-weak). With tied scores (a kNN mean, an oracle
    over 0/1 scores) quantile edges collapse and that rule skips the `win >= max` point, so here
    every distinct edge uses `>=` and the all-weak point is added; with untied scores this adds one
    point at 1/n % strong calls and the curve is otherwise RouteLLM's.
    Returns (% strong calls in 0-100, mean score) sorted by % strong.
    """
    win, s, w = _f(strong_win), _f(strong_scores), _f(weak_scores)
    edges = np.unique(np.quantile(win, np.linspace(0.0, 1.0, num_results + 1)))
    pct, perf = [], []
    for sel in [win >= t for t in edges] + [np.zeros_like(win, dtype=bool)]:
        pct.append(100.0 * sel.mean())
        perf.append(float(np.where(sel, s, w).mean()))
    order = np.argsort(pct, kind="stable")
    return np.asarray(pct)[order], np.asarray(perf)[order]


@register_metric("apgr", higher_is_better=True, description="average performance gap recovered")
def apgr(strong_pct: ArrayLike, perf: ArrayLike, weak_perf: float, strong_perf: float) -> float:
    """Area under the score curve over strong-call fraction, 0 = weak model, 1 = strong model."""
    x, y = _f(strong_pct) / 100.0, _f(perf)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    auc = float(np.trapezoid(y, x))
    weak_auc = float(np.trapezoid(np.full_like(x, weak_perf), x))
    strong_auc = float(np.trapezoid(np.full_like(x, strong_perf), x))
    if strong_auc == weak_auc:
        raise ValueError("APGR is undefined when the strong and weak scores (or x range) coincide")
    return (auc - weak_auc) / (strong_auc - weak_auc)


@register_metric("cpt", higher_is_better=False, description="% strong calls to reach x% PGR")
def cpt(
    strong_pct: ArrayLike, perf: ArrayLike, weak_perf: float, strong_perf: float, pgr: float
) -> float:
    """% calls to the strong model needed to recover `pgr` (0-1) of the weak-strong gap (0-100)."""
    x, y = _f(strong_pct), _f(perf)
    order = np.argsort(x, kind="stable")
    target = pgr * (strong_perf - weak_perf) + weak_perf
    # np.interp over the score axis exactly as RouteLLM does (meaningful when scores rise with x)
    return float(np.interp(target, y[order], x[order]))


@register_metric("pgr", higher_is_better=True, description="performance gap recovered at a point")
def pgr(perf: float, weak_perf: float, strong_perf: float) -> float:
    return (perf - weak_perf) / (strong_perf - weak_perf)


# ------------------------------------------------------------------ multi-model (RouterBench)


def non_decreasing_convex_hull(cost: ArrayLike, quality: ArrayLike) -> NDArray[np.float64]:
    """Upper concave hull of the points that is non-decreasing in cost, as an (m, 2) array.

    Starts at the cheapest point (the best one among equally cheap points) and ends at the best
    quality; a point below the segment joining two others is replaced by that segment (mixing two
    routers' decisions at random reaches every point on it).
    """
    c, q = _f(cost), _f(quality)
    keep = np.isfinite(c) & np.isfinite(q)
    c, q = c[keep], q[keep]
    if c.size == 0:
        raise ValueError("no finite (cost, quality) points")
    order = np.lexsort((-q, c))
    pts: list[tuple[float, float]] = []
    for ci, qi in zip(c[order], q[order], strict=True):
        if pts and qi <= pts[-1][1]:
            continue  # dominated: costs no less and gives no more
        pts.append((float(ci), float(qi)))
    hull: list[tuple[float, float]] = []
    for p in pts:  # Andrew's monotone chain, upper part
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()  # hull[-1] lies on or below the chord hull[-2] -> p
            else:
                break
        hull.append(p)
    return np.asarray(hull, dtype=np.float64)


@register_metric(
    "aiq", higher_is_better=True, description="RouterBench average improvement in quality"
)
def aiq(
    cost: ArrayLike, quality: ArrayLike, c_min: float | None = None, c_max: float | None = None
) -> float:
    """Area under the non-decreasing convex hull over [c_min, c_max], divided by c_max - c_min.

    Defaults: c_min = 0 and c_max = the largest cost (RouterBench). The hull is carried
    flat to c_max; below its cheapest point the router reaches nothing (0), as in RouterBench's
    trapezoid from there.
    """
    hull = non_decreasing_convex_hull(cost, quality)
    lo = 0.0 if c_min is None else float(c_min)
    hi = float(hull[-1, 0] if c_max is None else c_max)
    if hi <= lo:
        raise ValueError("AIQ needs c_max > c_min")
    xs = np.concatenate([hull[:, 0], [max(hi, hull[-1, 0])]])
    ys = np.concatenate([hull[:, 1], [hull[-1, 1]]])
    start = max(lo, float(xs[0]))  # below the cheapest point the router reaches nothing
    if start >= hi:
        return 0.0
    grid = np.union1d(np.clip(xs, start, hi), [start, hi])
    return float(np.trapezoid(np.interp(grid, xs, ys), grid) / (hi - lo))


def routed_outcomes(
    pred_quality: ArrayLike,
    true_quality: ArrayLike,
    true_cost: ArrayLike,
    expected_cost: ArrayLike,
    willingness: Sequence[float],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Route each prompt to argmax_m pred[i, m] - expected_cost[m] / w, for each willingness w.

    Returns the realised (cost, quality) of every prompt's choice, two (len(willingness), n)
    arrays; their means over prompts (`curve_means`) are the cost-quality curve AIQ integrates.
    """
    pq, tq, tc = _f(pred_quality), _f(true_quality), _f(true_cost)
    ec = _f(expected_cost)
    rows = np.arange(pq.shape[0])
    costs, quals = [], []
    for w in willingness:
        util = pq - (ec[None, :] / w if w > 0 else ec[None, :] * 1e12)
        pick = np.argmax(util, axis=1)
        costs.append(tc[rows, pick])
        quals.append(tq[rows, pick])
    return np.asarray(costs).reshape(len(costs), -1), np.asarray(quals).reshape(len(quals), -1)


def curve_means(
    cost: NDArray[np.float64], quality: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean realised cost (NaN where no cost is known) and quality per willingness row."""
    known = np.isfinite(cost)
    n = known.sum(axis=1)
    c = np.where(n > 0, np.where(known, cost, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
    return c.astype(np.float64), np.nanmean(quality, axis=1).astype(np.float64)


def aiq_bootstrap(
    outcomes: Mapping[str, tuple[ArrayLike, ArrayLike]],
    c_max: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, NDArray[np.float64]]:
    """AIQ of every router on `n_boot` resamples (with replacement) of the judged prompts.

    `outcomes` maps a router to its `routed_outcomes` on the same prompts; every router is scored on
    the same resamples (paired), so differences between two routers' draws give a confidence
    interval for their AIQ gap. `c_max` stays the full sample's, as in the point estimate.
    """
    arrays = {k: (_f(c), _f(q)) for k, (c, q) in outcomes.items()}
    n = next(iter(arrays.values()))[0].shape[1] if arrays else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n)) if n else np.zeros((n_boot, 0), dtype=np.int64)
    out = {}
    for name, (cost, quality) in arrays.items():
        vals = np.empty(n_boot)
        for b, idx in enumerate(draws):
            c, q = curve_means(cost[:, idx], quality[:, idx])
            vals[b] = aiq(c, q, c_min=0.0, c_max=c_max)
        out[name] = vals
    return out


def apgr_bootstrap(
    gap: ArrayLike,
    strong: ArrayLike,
    weak: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    num_results: int = 10,
) -> NDArray[np.float64]:
    """APGR on `n_boot` resamples (with replacement) of the judged prompts of a pair benchmark:
    `gap` is the router's predicted strong-minus-weak quality per prompt, `strong` / `weak` the two
    models' true scores; each resample recomputes the threshold sweep and the models' means (NaN
    where the two models tie on a resample)."""
    g, s, w = _f(gap), _f(strong), _f(weak)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, len(g), size=len(g))
        pct, perf = threshold_sweep(g[idx], s[idx], w[idx], num_results)
        try:
            out[b] = apgr(pct, perf, float(w[idx].mean()), float(s[idx].mean()))
        except ValueError:  # the two models tie on this resample: APGR undefined
            out[b] = np.nan
    return out


# --------------------------------------------------------------------------- classifier quality


@register_metric("macro_f1", higher_is_better=True, description="unweighted mean F1 over labels")
def macro_f1(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> float:
    labs = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred))
    cm = confusion_matrix(y_true, y_pred, labs)
    tp = np.diag(cm).astype(np.float64)
    prec_den, rec_den = cm.sum(axis=0), cm.sum(axis=1)
    f1 = np.where(prec_den + rec_den > 0, 2 * tp / np.maximum(prec_den + rec_den, 1), 0.0)
    present = (prec_den + rec_den) > 0  # labels seen in neither truth nor prediction do not count
    return float(f1[present].mean()) if present.any() else 0.0


def per_class_f1(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """label -> precision, recall, f1 and support (number of true prompts of that label)."""
    labs = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred))
    cm = confusion_matrix(y_true, y_pred, labs)
    tp = np.diag(cm).astype(np.float64)
    pred_n, true_n = cm.sum(axis=0), cm.sum(axis=1)
    out = {}
    for i, lab in enumerate(labs):
        p = tp[i] / pred_n[i] if pred_n[i] else 0.0
        r = tp[i] / true_n[i] if true_n[i] else 0.0
        f = 2 * tp[i] / (pred_n[i] + true_n[i]) if pred_n[i] + true_n[i] else 0.0
        out[lab] = {"precision": p, "recall": r, "f1": f, "support": float(true_n[i])}
    return out


def confusion_matrix(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> NDArray[np.int64]:
    """Rows = true label, columns = predicted label, in `labels` order."""
    idx = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        if t in idx and p in idx:
            cm[idx[t], idx[p]] += 1
    return cm


@register_metric("ece", higher_is_better=False, description="expected calibration error")
def ece(confidence: ArrayLike, correct: ArrayLike, n_bins: int = 10) -> float:
    """Sum over equal-width confidence bins of |accuracy - confidence|, weighted by bin share."""
    conf, corr = _f(confidence), _f(correct)
    bins = np.clip((conf * n_bins).astype(int), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.mean() * abs(corr[m].mean() - conf[m].mean())
    return float(total)


# --------------------------------------------------------------------------- speed


@register_metric("routing_ms", higher_is_better=False, description="routing time percentiles (ms)")
def routing_time_percentiles(
    times_ms: ArrayLike, percentiles: Sequence[float] = (50, 95, 99)
) -> dict[str, float]:
    t = _f(times_ms)
    return {f"p{int(p)}": float(np.percentile(t, p)) for p in percentiles}


@register_metric(
    "routing_p50_ms", higher_is_better=False, description="median routing time per request (ms)"
)
def routing_p50_ms(times_ms: ArrayLike) -> float:
    t = _f(times_ms)
    return float(np.median(t)) if t.size else float("nan")


# --------------------------------------------------------------------------- promotion


@register_metric(
    "suite_score",
    higher_is_better=True,
    description="the promotion number: mean over a suite's benchmarks of each one's headline "
    "metric (APGR for pair, AIQ or top-1 quality for multi)",
)
def suite_score(headlines: ArrayLike) -> float:
    v = _f(headlines)
    return float(v.mean()) if v.size else float("nan")


# --------------------------------------------------------------------------- own traffic


@register_metric(
    "traffic_win_rate",
    higher_is_better=True,
    description="held-out traffic comparisons with a winner where the router's predicted quality "
    "ranks the winner first (a predicted tie counts half), weighted",
)
def traffic_win_rate(
    predicted_gap: ArrayLike, outcome: ArrayLike, weight: ArrayLike | None = None
) -> float:
    """`predicted_gap` = q_a - q_b per comparison; `outcome` 1 (a won), 0 (b won), 0.5 (tie:
    left out, it names no winner)."""
    gap, y = _f(predicted_gap), _f(outcome)
    w = np.ones_like(y) if weight is None else _f(weight)
    decisive = y != 0.5
    if not (decisive & (w > 0)).any():
        return float("nan")
    hit = np.where(gap == 0, 0.5, ((gap > 0) == (y > 0.5)).astype(np.float64))
    return float((hit * w)[decisive].sum() / w[decisive].sum())


@register_metric(
    "traffic_apgr",
    higher_is_better=True,
    description="APGR on the newest traffic: the pool's most compared pair, each answer scored "
    "1 won / 0 lost / 0.5 tie, the dearer model as the strong one",
)
def traffic_apgr(
    strong_win: ArrayLike, strong_scores: ArrayLike, weak_scores: ArrayLike, min_gap: float = 0.1
) -> float:
    """APGR is a share of the gap between always-strong and always-weak: when the two models win
    about equally often (gap below `min_gap`) there is no gap to recover and it is NaN (the
    win rate still says how well the router picks)."""
    s, w = _f(strong_scores), _f(weak_scores)
    if s.size == 0 or abs(s.mean() - w.mean()) < min_gap:
        return float("nan")
    pct, perf = threshold_sweep(strong_win, s, w)
    return apgr(pct, perf, float(w.mean()), float(s.mean()))
