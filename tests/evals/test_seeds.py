"""Seed spread: a router per training seed on a tiny suite; numbers with mean, range, intervals."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from evals import experiments
from evals import metrics as M
from evals import realprompts as R
from evals.suite import SuiteConfig

TINY = {
    "static_source": "input",
    "static_dim": 32,
    "clf_max_per_class": 60,
    "clf_hash_features": 4096,
    "lat_members": 1,
    "lat_epochs": 3,
    "task_encoder": False,
}


def test_apgr_bootstrap_brackets_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    strong = (rng.random(400) < 0.8).astype(float)
    weak = (rng.random(400) < 0.5).astype(float)
    gap = strong - weak + rng.normal(0, 0.5, 400)  # an informative but noisy router
    pct, perf = M.threshold_sweep(gap, strong, weak)
    point = M.apgr(pct, perf, weak.mean(), strong.mean())
    draws = M.apgr_bootstrap(gap, strong, weak, n_boot=300)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    assert lo < point < hi and hi - lo < 0.5
    assert np.array_equal(draws, M.apgr_bootstrap(gap, strong, weak, n_boot=300))  # seeded


@pytest.mark.timeout(1800)  # two tiny trainings with every real prompt: minutes on a busy machine
def test_evaluate_seeds_reports_mean_range_and_intervals(data_root, tmp_path) -> None:
    suite = {
        "benchmarks": [
            {"name": "gsm8k", "datasets": ["routellm_gsm8k"], "kind": "pair",
             "strong": "GPT-4-1106-preview", "weak": "Mixtral-8x7B-Instruct"},
            {"name": "routerbench", "datasets": ["routerbench_zs"], "kind": "multi"},
        ],
        "train_datasets": ["routellm_gsm8k", "routerbench_zs"],
        "max_train_prompts_per_dataset": 120,
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    cfg = SuiteConfig.load(path).capped(120)
    out = experiments.evaluate_seeds(
        cfg, [0, 1], router_overrides=TINY, log=False, n_boot=100, save_dir=tmp_path / "routers"
    )
    assert set(out["per_seed"]) == {"0", "1"}
    for row in out["per_seed"].values():
        assert row["gsm8k.apgr_lo"] <= row["gsm8k.apgr"] <= row["gsm8k.apgr_hi"]
        assert row["routerbench.aiq_lo"] <= row["routerbench.aiq"] <= row["routerbench.aiq_hi"]
        assert 0.0 <= row["everyday.simple_called_simple"] <= 1.0
    spread = out["spread"]["gsm8k.apgr"]
    values = [row["gsm8k.apgr"] for row in out["per_seed"].values()]
    assert spread["min"] == min(values) and spread["max"] == max(values)
    assert spread["mean"] == np.mean(values)
    assert "complexity.spearman" in out["spread"]
    for row in out["per_seed"].values():  # the classifier on held-out real (Auto-J) prompts
        assert row["task_real.n"] > 100
        for key in ("task_real.accuracy", "complexity.spearman"):  # means and ranks: bracketed
            assert row[f"{key}_lo"] <= row[key] <= row[f"{key}_hi"], key
        assert row["task_real.macro_f1_lo"] < row["task_real.macro_f1_hi"]  # biased: not always
        assert 0.0 <= row["complexity.complex_share_sharegpt"] <= 1.0
    # the saved routers are the ones measured
    import inferroute

    saved = inferroute.load_router(tmp_path / "routers" / "seed-1")
    spearman = R.complexity_metrics(saved, experiments.real_prompts(cfg, "test")["difficulty"])
    assert spearman["spearman"] == out["per_seed"]["1"]["complexity.spearman"]
