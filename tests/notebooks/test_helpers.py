"""evals.notebook.helpers / evals.figures: the numbers and figures the notebooks show."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from evals import metrics as M
from evals.notebook import helpers as H
from evals import figures as P
from evals.harness import BenchmarkResult, EvalResult


def _long(rows):
    df = pd.DataFrame(rows, columns=["dataset", "prompt_id", "model", "score"])
    df["prompt"] = df["prompt_id"]
    df["cost_usd"] = np.where(df["model"] == "big", 2.0, 0.5)
    df["output_chars"] = 100.0
    return df


@pytest.fixture
def scores():
    # p1: both right, p2: only small right, p3: only big right, p4: both wrong
    return _long(
        [
            ("d", "p1", "big", 1), ("d", "p1", "small", 1),
            ("d", "p2", "big", 0), ("d", "p2", "small", 1),
            ("d", "p3", "big", 1), ("d", "p3", "small", 0),
            ("d", "p4", "big", 0), ("d", "p4", "small", 0),
            ("d", "p5", "big", 1),  # small never scored p5: left out of pairwise numbers
        ]
    )  # fmt: skip


def test_settings_fast_and_full_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("INFERBASE_NB_FAST", "1")
    monkeypatch.setenv("INFERBASE_OPTUNA_STORAGE", f"sqlite:///{tmp_path}/o.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    fast = H.settings()
    assert fast.fast and fast.n_trials < H.settings(fast=False).n_trials
    assert fast.optuna_storage.endswith("o.db")
    assert fast.tracking_uri == f"sqlite:///{H.REPO_ROOT / 'mlflow.db'}"  # humans: the project db
    monkeypatch.setenv("INFERBASE_NB_FAST", "0")
    assert not H.settings().fast and H.settings(fast=True).fast  # the parameter wins
    assert fast.optuna_storage != fast.tracking_uri


def test_model_table(scores):
    t = H.model_table(scores).set_index("model")
    assert t.loc["big", "prompts"] == 5 and t.loc["small", "prompts"] == 4
    assert t.loc["big", "mean_score"] == pytest.approx(3 / 5)
    assert t.loc["small", "mean_cost_usd"] == 0.5


def test_agreement_and_headroom(scores):
    a = H.agreement_matrix(scores, "d")
    assert a.loc["big", "small"] == pytest.approx(0.5)  # p1 and p4 agree of p1..p4
    assert a.loc["big", "big"] == 1.0
    h = H.headroom(scores, "d")
    assert h["prompts"] == 4 and h["best_single"] == pytest.approx(0.5)
    assert h["oracle"] == pytest.approx(0.75)  # only p4 is lost by both
    assert h["rescued"] == pytest.approx(0.25)  # p2: the best model (big on ties: first) loses


def test_reliability_bins_match_ece():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 500)
    correct = rng.uniform(size=500) < conf**2
    b = H.reliability_bins(conf, correct, n_bins=10)
    assert b["n"].sum() == 500 and (b["hi"] > b["lo"]).all()
    ece = float((b["n"] / 500 * (b["accuracy"] - b["confidence"]).abs()).sum())
    assert ece == pytest.approx(M.ece(conf, correct, n_bins=10))
    assert list(H.reliability_bins([1.0], [True]).itertuples(index=False))[0][:3] == (0.9, 1.0, 1)


def test_classification_errors_most_confident_first():
    e = H.classification_errors(
        ["a", "b", "c"], ["math", "code", "chat"], [("math", 0.9), ("chat", 0.6), ("code", 0.8)]
    )
    assert list(e["prompt"]) == ["c", "b"] and list(e["confidence"]) == [0.8, 0.6]


def test_metrics_and_anchor_tables():
    res = EvalResult("r")
    res.benchmarks["mt"] = BenchmarkResult("mt", "pair", 3, {"apgr": 0.6, "cpt50": 20.0})
    res.benchmarks["rb"] = BenchmarkResult("rb", "multi", 3, {"aiq": 0.7, "best_quality": 0.8})
    t = H.metrics_table({"r": res})
    assert t.loc["r", ("mt", "apgr")] == 0.6 and t.loc["r", ("rb", "aiq")] == 0.7
    assert ("rb", "best_quality") not in t.columns
    a = H.anchors_table({"mt_bench": [{"router": "x", "apgr": 0.8}]})
    assert a.to_dict("records") == [{"benchmark": "mt_bench", "router": "x", "apgr": 0.8}]


class FakeRouter:
    """Routes by prompt length and mode: long prompts to `big` unless the mode is cost."""

    def route(self, messages, pool, optimize="balanced", task=None):
        text = messages[-1]["content"]
        model = "big" if len(text) > 3 and optimize != "cost" else "small"
        task = "math" if "+" in text else "chat"
        return SimpleNamespace(
            model=model, task=task, confidence=0.9, complexity="simple", complexity_score=0.1
        )


def test_route_table_and_shares():
    t = H.route_table(FakeRouter(), ["1+1", "a long one"], ["big", "small"], ("quality", "cost"))
    assert len(t) == 4
    assert t.set_index(["prompt", "mode"]).loc[(1, "quality"), "model"] == "big"
    s = H.route_shares(t, by="mode")
    assert s.loc[("cost", "cost"), "small"] == 1.0
    assert s.loc[("quality", "quality"), "big"] == pytest.approx(0.5)
    assert np.allclose(s.fillna(0).sum(axis=1), 1.0)


def test_figures(scores):
    table = H.model_table(scores)
    figs = [
        P.heatmap(H.agreement_matrix(scores, "d"), "agreement"),
        P.score_distributions(scores, "d"),
        P.model_scatter(table, "mean_cost_usd", title="cost"),
        P.reliability_figure(H.reliability_bins([0.2, 0.9, 0.95], [0, 1, 1])),
        P.stacked_shares(pd.DataFrame({"a": [0.5, 1.0], "b": [0.5, 0.0]}, index=["x", "y"]), "s"),
        P.bars(pd.Series({"a": 1.0, "b": 2.0}), "bars", highlight=["a"]),
    ]
    for fig in figs:
        assert isinstance(fig, Figure) and fig.axes
    assert P.as_figure(figs[0].axes[0]) is figs[0]


def test_sample_per_group():
    df = pd.DataFrame({"task": ["a"] * 5 + ["b"] * 2 + [None], "x": range(8)})
    s = H.sample_per_group(df, "task", 3)
    assert s["task"].value_counts().to_dict() == {"a": 3, "b": 2}
    assert s.equals(H.sample_per_group(df, "task", 3))  # seeded
