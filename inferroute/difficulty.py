"""Complexity and expected answer length, learned from labels (training side; pure numpy/sklearn).

Complexity: a ridge regression from prompt features to a difficulty on FLASK's scale (0 = "simple
lifestyle knowledge" .. 1 = "expert level knowledge"), fitted on every difficulty label we have:

- FLASK's five levels and just-eval's GPT-4 easy / medium / hard tags (real user prompts, labelled
  by people or GPT-4: the meaning of "simple" and "complex" comes from these);
- on benchmark prompts, the share of models that fail the prompt (1 - mean score over the models
  that answered it), weighted down (`complexity_bench_weight`) since it measures model weakness as
  much as the prompt's difficulty.

Each label source gets its own offset (a one-hot column) so that the sources' scales need not agree;
predictions use FLASK's offset. The cuts between simple / medium / complex separate the labelled
prompts best (Youden's J): `simple` is below the cut that best tells the prompts labelled at or
below `complexity_simple_max_label` (FLASK's first level, just-eval's "easy") from the others, and
`complex` above the one that best tells those at or above `complexity_complex_min_label` (FLASK's
major and expert levels, just-eval's "hard") from the others. Length is one feature among the
embedding's, not the target.

Expected output tokens: a log-additive model of the answer lengths per model and task (median of
log tokens overall + a model effect + a task effect + a shrunk model-x-task cell), so a model seen
on few tasks still gets a length for every task, scaled by how verbose it is elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inferroute.costs import OutputLengths

FloatArray = npt.NDArray[np.float64]
REFERENCE_SOURCE = "flask"  # the scale complexity scores are reported on


@dataclass(frozen=True, slots=True)
class ComplexityFit:
    coef: FloatArray
    intercept: float  # includes the reference source's offset
    cuts: tuple[float, float]


def fit_complexity(
    x: npt.NDArray[np.float32],
    y: FloatArray,
    sources: Sequence[str],
    weights: FloatArray,
    labelled: npt.NDArray[np.bool_],
    alpha: float,
    simple_max: float,
    complex_min: float,
    cut_rule: str = "youden",
) -> ComplexityFit:
    """Ridge on [x, one-hot(source)] with sample `weights`; cuts from the `labelled` rows
    (`cut_rule`: "youden" or "prevalence", see `cuts`)."""
    from sklearn.linear_model import Ridge

    names = sorted(set(sources))
    onehot = np.zeros((len(sources), len(names)), dtype=np.float32)
    onehot[np.arange(len(sources)), [names.index(s) for s in sources]] = 1.0
    ridge = Ridge(alpha=alpha).fit(np.hstack([x, onehot]), y, sample_weight=weights)
    d = x.shape[1]
    coef = np.asarray(ridge.coef_[:d], dtype=np.float64)
    ref = REFERENCE_SOURCE if REFERENCE_SOURCE in names else names[0]
    intercept = float(ridge.intercept_) + float(ridge.coef_[d + names.index(ref)])
    rows = labelled if labelled.any() else np.ones(len(y), dtype=bool)
    pred = np.clip(x[rows] @ coef + intercept, 0.0, 1.0)  # the scores routing labels
    return ComplexityFit(
        coef,
        intercept,
        cuts(pred, y[rows] <= simple_max + 1e-9, y[rows] >= complex_min - 1e-9, cut_rule),
    )


def cuts(
    pred: FloatArray,
    simple: npt.NDArray[np.bool_],
    complex_: npt.NDArray[np.bool_],
    rule: str = "youden",
) -> tuple[float, float]:
    """(lo, hi): `simple` below lo, `complex` at or above hi, from predictions on labelled prompts.

    "youden": each cut maximises TPR - FPR of its level against the rest. It ignores how common
    the level is, so when the level is a minority and the scores overlap it moves the cut into
    the bulk of the other prompts (many more called `complex` than are labelled complex).
    "prevalence": each cut is the quantile that calls as many labelled prompts simple (complex) as
    are labelled so, i.e. the predicted mix matches the labelled mix; the ranking, and so the
    Spearman correlation, is the same under both rules."""
    if rule == "prevalence":
        lo = float(np.quantile(pred, simple.mean())) if simple.any() else float(np.min(pred))
        if (pred < lo).mean() < simple.mean():  # ties at the quantile (scores clipped at 0)
            lo = float(np.nextafter(lo, np.inf))
        hi = (
            float(np.quantile(pred, 1.0 - complex_.mean()))
            if complex_.any()
            else float(np.max(pred)) + 1.0
        )
    elif rule == "youden":
        lo = _youden(pred, simple)
        hi = -_youden(-pred, complex_)
    else:
        raise ValueError(f"unknown complexity cut rule {rule!r}: youden or prevalence")
    return lo, max(hi, lo + 1e-6)


def _youden(score: FloatArray, positive: npt.NDArray[np.bool_]) -> float:
    """The cut t maximising P(score < t | positive) - P(score < t | negative) (Youden's J)."""
    if positive.all() or not positive.any():
        return float(np.median(score))
    cand = np.unique(score)
    pos = np.searchsorted(np.sort(score[positive]), cand, side="left") / positive.sum()
    neg = np.searchsorted(np.sort(score[~positive]), cand, side="left") / (~positive).sum()
    return float(cand[int(np.argmax(pos - neg))])


def fit_output_lengths(
    models: Sequence[str],
    tasks: Sequence[str],
    tokens: FloatArray,
    default: float,
    shrink: float = 20.0,
) -> OutputLengths:
    """Log-additive answer-length model; see the module docstring. Empty input: `default` only."""
    keep = np.isfinite(tokens) & (tokens > 0)
    if not keep.any():
        return OutputLengths(default=default)
    m = np.asarray(models, dtype=object)[keep]
    t = np.asarray(tasks, dtype=object)[keep]
    y = np.log(tokens[keep])
    mu = float(np.median(y))

    def effects(keys: npt.NDArray[np.object_], resid: FloatArray) -> dict[str, float]:
        out = {}
        for k in np.unique(keys):
            r = resid[keys == k]
            out[str(k)] = float(np.median(r)) * len(r) / (len(r) + shrink)
        return out

    a = effects(m, y - mu)
    a_row = np.array([a[str(k)] for k in m])
    b = effects(t, y - mu - a_row)
    b_row = np.array([b[str(k)] for k in t])
    pairs = np.array([f"{x}|{z}" for x, z in zip(m, t, strict=True)], dtype=object)
    cells = effects(pairs, y - mu - a_row - b_row)
    by_model_task = {
        key: float(np.exp(mu + a[key.split("|")[0]] + b[key.split("|")[1]] + c))
        for key, c in cells.items()
    }
    return OutputLengths(
        by_model_task,
        {k: float(np.exp(mu + v)) for k, v in a.items()},
        {k: float(np.exp(mu + v)) for k, v in b.items()},
        float(np.exp(mu)),
        {k: float(np.exp(v)) for k, v in a.items()},
    )
