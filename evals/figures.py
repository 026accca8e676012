"""Every figure evals draws, for the tracked runs (MLflow artifacts) and the notebooks: each takes
computed results or tables and returns a matplotlib Figure.

Figures are built without pyplot state (`matplotlib.figure.Figure`), so they work under any
backend (Agg in CI), nothing needs closing, and a notebook shows one by ending a cell with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from evals.harness import EvalResult


def benchmark_figure(results: Mapping[str, EvalResult], benchmark: str, kind: str) -> Figure:
    """Pair: score vs % strong calls (APGR curves). Multi: quality vs cost with single models."""
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for name, res in results.items():
        br = res.benchmarks.get(benchmark)
        if br is None:
            continue
        if name.startswith("single:"):
            if kind == "multi" and "cost" in br.metrics:
                ax.scatter(br.metrics["cost"], br.metrics["quality"], marker="x", color="grey")
                ax.annotate(name[7:], (br.metrics["cost"], br.metrics["quality"]), fontsize=6)
            elif kind == "pair":
                ax.axhline(br.metrics["quality"], linestyle="--", color="grey", linewidth=0.8)
            continue
        if br.curve:
            style = "-" if name != "zero_router" else ":"
            ax.plot(br.curve["x"], br.curve["y"], style, marker=".", label=name, linewidth=1.2)
    if kind == "pair":
        ax.set_xlabel("calls to the strong model (%)")
    else:
        ax.set_xlabel("mean cost per prompt (USD)")
        ax.set_xscale("symlog", linthresh=1e-6)
    ax.set_ylabel("mean score")
    ax.set_title(benchmark)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_figure(
    cm: np.ndarray, labels: Sequence[str], title: str = "task classifier"
) -> Figure:
    """Row-normalised confusion matrix (colour) with the raw counts written in the cells."""
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    rows = cm.sum(axis=1, keepdims=True)
    ax.imshow(cm / np.maximum(rows, 1), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def heatmap(
    frame: pd.DataFrame,
    title: str,
    *,
    fmt: str = "{:.2f}",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    size: tuple[float, float] = (8, 6),
) -> Figure:
    """A labelled heatmap of a numeric DataFrame, values written in the cells."""
    fig = Figure(figsize=size)
    ax = fig.subplots()
    values = frame.to_numpy(dtype=np.float64)
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(frame.shape[1]), [str(c) for c in frame.columns], rotation=60, ha="right")
    ax.set_yticks(range(frame.shape[0]), [str(i) for i in frame.index])
    ax.tick_params(labelsize=7)
    if frame.size <= 400:
        mid = np.nanmean(values) if values.size else 0.0
        for i in range(frame.shape[0]):
            for j in range(frame.shape[1]):
                v = values[i, j]
                if np.isfinite(v) and v != 0:
                    color = "white" if v < mid else "black"
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6, color=color)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def score_distributions(df: pd.DataFrame, dataset: str, top: int = 15) -> Figure:
    """Box plots of per-prompt scores for the `top` models (by mean) of one dataset."""
    rows = df[df["dataset"] == dataset]
    order = rows.groupby("model")["score"].mean().sort_values(ascending=False).index[:top]
    data = [rows.loc[rows["model"] == m, "score"].to_numpy() for m in order]
    fig = Figure(figsize=(9, 0.35 * len(order) + 1.5))
    ax = fig.subplots()
    ax.boxplot(data, orientation="horizontal", showmeans=True)
    ax.set_yticks(range(1, len(order) + 1), list(order), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("score per prompt (0-1)")
    ax.set_title(f"{dataset}: score distribution per model (top {len(order)} by mean)")
    fig.tight_layout()
    return fig


def model_scatter(
    table: pd.DataFrame, x: str, y: str = "mean_score", *, title: str, logx: bool = True
) -> Figure:
    """One point per model of `model_table` rows, labelled; e.g. cost or length vs quality."""
    t = table.dropna(subset=[x, y])
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for ds, g in t.groupby("dataset"):
        ax.scatter(g[x], g[y], label=str(ds), s=18)
        for _, r in g.iterrows():
            ax.annotate(str(r["model"])[:24], (r[x], r[y]), fontsize=6, alpha=0.8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def reliability_figure(bins: pd.DataFrame, title: str = "task classifier calibration") -> Figure:
    """Reliability diagram: accuracy vs confidence per bin (dot size = prompts), diagonal."""
    fig = Figure(figsize=(9, 4))
    ax, hist = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    ax.plot(bins["confidence"], bins["accuracy"], "-o", label="classifier")
    sizes: Any = 20 + 200 * bins["n"] / max(int(bins["n"].max()), 1) if len(bins) else []
    ax.scatter(bins["confidence"], bins["accuracy"], s=sizes, alpha=0.3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize=7)
    hist.bar((bins["lo"] + bins["hi"]) / 2, bins["n"], width=(bins["hi"] - bins["lo"]) * 0.9)
    hist.set_xlabel("confidence")
    hist.set_ylabel("prompts")
    hist.set_title("confidence histogram")
    fig.tight_layout()
    return fig


def stacked_shares(shares: pd.DataFrame, title: str) -> Figure:
    """Horizontal stacked bars: one bar per index row (e.g. (mode, task)), one colour per model."""
    fig = Figure(figsize=(9, 0.3 * len(shares) + 1.5))
    ax = fig.subplots()
    left = np.zeros(len(shares))
    labels = [" / ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in shares.index]
    for col in shares.columns:
        vals = shares[col].to_numpy(dtype=np.float64)
        ax.barh(labels, vals, left=left, label=str(col))
        left += vals
    ax.invert_yaxis()
    ax.tick_params(labelsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of prompts")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def bars(
    values: pd.Series, title: str, *, xlabel: str = "", highlight: Sequence[str] = ()
) -> Figure:
    """Horizontal bars of a named series (highlighted names in a second colour)."""
    fig = Figure(figsize=(8, 0.3 * len(values) + 1.5))
    ax = fig.subplots()
    colors = ["tab:orange" if str(i) in set(highlight) else "tab:blue" for i in values.index]
    ax.barh([str(i) for i in values.index], values.to_numpy(dtype=np.float64), color=colors)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def learning_curve_figure(curve: pd.DataFrame, target: float = 0.9) -> Figure:
    """Share of held-out prompts routed to each task's winner vs labelled pairs (mean over seeds,
    band = min..max), the target as a dotted line (evals.learning_curve)."""
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    for task, g in curve.groupby("task", sort=True):
        s = g.groupby("n_pairs")["to_winner"]
        x = np.asarray(s.mean().index, dtype=np.float64)
        ax.plot(x, s.mean().to_numpy(), "-o", label=str(task))
        ax.fill_between(x, s.min().to_numpy(), s.max().to_numpy(), alpha=0.2)
    ax.axhline(target, ls=":", color="grey", label=f"{target:.0%}")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("labelled pairs")
    ax.set_ylabel("held-out prompts routed to the winner")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def as_figure(obj: Any) -> Figure:
    """The Figure behind an Axes (or array of Axes) returned by a library plot (e.g. optuna)."""
    if isinstance(obj, Figure):
        return obj
    first = np.ravel(obj)[0] if isinstance(obj, np.ndarray) else obj
    return first.figure
