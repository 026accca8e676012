"""evals.task_eval: the metrics on a hand-computed case, the bootstrap, the splits, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evals import task_eval as TE
from evals.__main__ import main


def test_metrics_on_a_hand_computed_case() -> None:
    p = TE.Predictions(
        ["math", "math", "chat", "chat"],
        ["math", "chat", "chat", "chat"],
        np.array([0.9, 0.6, 0.8, 0.7]),
    )
    s = TE.scores(p)
    assert s["accuracy"] == pytest.approx(0.75)
    # math: P 1/1, R 1/2 -> F1 2/3; chat: P 2/3, R 2/2 -> F1 4/5; other tasks absent from both
    assert s["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    # one prompt per bin: |1-0.9| + |0-0.6| + |1-0.8| + |1-0.7|, each weighing 1/4
    assert s["ece"] == pytest.approx((0.1 + 0.6 + 0.2 + 0.3) / 4)
    summary = TE.summarise([p, p], n_boot=0)
    assert summary["accuracy"] == {"mean": 0.75, "min": 0.75, "max": 0.75}
    assert summary["per_class"]["chat"] == {"f1": pytest.approx(0.8), "support": 2.0}


def test_the_bootstrap_uses_the_same_definitions_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    names = TE.task_labels()
    truth = [names[i] for i in rng.integers(0, 6, 400)]
    pred = [t if rng.random() < 0.7 else names[int(rng.integers(0, 6))] for t in truth]
    p = TE.Predictions(truth, pred, rng.uniform(0.3, 1.0, 400))
    t, q = TE._codes(p)
    fast = TE._fast_scores(t, q, p.conf, len(names))
    assert fast == pytest.approx(tuple(TE.scores(p)[k] for k in TE.METRICS))
    ci = TE.bootstrap_interval([p], n_boot=300)
    assert ci["accuracy"][0] < TE.scores(p)["accuracy"] < ci["accuracy"][1]
    assert ci["macro_f1"][0] < TE.scores(p)["macro_f1"] < ci["macro_f1"][1]


def test_the_real_split_is_stratified_and_leaves_benchmarks_in_training() -> None:
    labels = pd.DataFrame(
        {
            "task": ["chat"] * 50 + ["math"] * 50 + ["closed_qa"] * 100,
            "dataset": ["r"] * 100 + ["b"] * 100,
        }
    )
    real = (labels["dataset"] == "r").to_numpy()
    train, test = TE.real_split(labels, real, seed=1, test_frac=0.2)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 200
    assert real[test].all() and not real[train].all()
    assert labels["task"].iloc[test].value_counts().to_dict() == {"chat": 10, "math": 10}


def test_cli_prints_the_held_out_and_leave_one_source_out_tables(
    data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["task-eval", "--fast", "--max-per-dataset", "70", "--seeds", "1", "--n-boot", "50"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "held-out real prompts" in out and "leave out autoj_pairwise" in out
    for column in ("accuracy", "macro_f1", "ece", "support"):
        assert column in out


def test_confusion_and_reliability_inputs_pool_the_seeds() -> None:
    a = TE.Predictions(["math", "chat"], ["math", "math"], np.array([0.9, 0.6]))
    b = TE.Predictions(["chat"], ["chat"], np.array([0.8]))
    result = {"held_out": {"confusion": [[0] * 15 for _ in range(15)]}, "predictions": [a, b]}
    names = TE.task_labels()
    for t, p in (("math", "math"), ("chat", "math"), ("chat", "chat")):
        result["held_out"]["confusion"][names.index(t)][names.index(p)] += 1
    cm, kept = TE.confusion(result)
    assert sorted(kept) == ["chat", "math"] and cm.sum() == 3
    assert cm[kept.index("chat"), kept.index("math")] == 1
    conf, right = TE.confidence_and_correct(result)
    assert conf.tolist() == [0.9, 0.6, 0.8] and right.tolist() == [1.0, 0.0, 1.0]


class _ZeroEmbedder:
    """An embedder with nothing to say: the hashed words alone carry the task."""

    dim = 2

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), self.dim), np.float32)


def test_the_recipe_self_trains_on_the_unlabelled_prompts_it_is_given() -> None:
    """Words met only in unlabelled prompts (next to a labelled task's words) decide held-out
    prompts once self-training is on (clf_pseudo_share > 0), and not without it."""
    from evals.our_router import router_config

    rng = np.random.default_rng(0)
    fill = ["the", "a", "please", "about", "sea", "moon", "cats", "today", "my", "for"]

    def prompts(words: list[str], n: int) -> list[str]:
        return [" ".join([*words, *rng.choice(fill, 4)]) for _ in range(n)]

    # the two tasks' words have the same lengths: the text statistics cannot tell them apart
    texts = prompts(["poem", "verse"], 60) + prompts(["into", "dutch"], 60)
    test = prompts(["haiku", "haiku"], 10) + prompts(["frans", "frans"], 10)
    labels = pd.DataFrame(
        {
            "prompt": texts + test,
            "task": ["creative_writing"] * 60
            + ["translation"] * 60
            + ["creative_writing"] * 10
            + ["translation"] * 10,
            "dataset": "autoj_scenarios",
        }
    )
    unlabelled = prompts(["poem", "haiku"], 200) + prompts(["into", "frans"], 200)
    feats = TE.Features.build(labels, None, _ZeroEmbedder(), unlabelled)
    assert feats.u_emb is not None and len(feats.u_texts) == len(set(unlabelled))
    train, held = np.arange(120), np.arange(120, 140)
    cfg = router_config(
        {"clf_hash_features": 2**12, "clf_bank_size": 0, "clf_pseudo_min_conf": 0.6}
    )
    _, plain = feats.fit_predict(train, held, cfg.with_overrides(clf_pseudo_share=0.0))
    _, selfish = feats.fit_predict(train, held, cfg.with_overrides(clf_pseudo_share=0.3))
    assert TE.scores(selfish)["accuracy"] == 1.0
    assert TE.scores(plain)["accuracy"] <= 0.7
