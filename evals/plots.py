"""Figures for the tracked runs (matplotlib, Agg backend): curves of every router on a benchmark."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evals.harness import EvalResult


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def benchmark_figure(results: Mapping[str, EvalResult], benchmark: str, kind: str) -> Any:
    """Pair: score vs % strong calls (APGR curves). Multi: quality vs cost with single models."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
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


def confusion_figure(cm: np.ndarray, labels: Sequence[str], title: str = "task classifier") -> Any:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 6))
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
