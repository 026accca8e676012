"""InferRoute's fine-tuned task encoder as the research harness measures and caches it
(evals.encoder, evals.our_router.task_encoder)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evals import encoder, our_router, task_eval
from tests.inferroute.conftest import CODE, TRANSLATE

QUICK = {
    "enc_epochs": 4,
    "enc_max_len": 32,
    "enc_batch_size": 8,
    "enc_lr": 1e-4,
    "enc_head_lr": 5e-3,
    "enc_train_threads": 1,
}


def test_evaluate_scores_held_out_real_prompts_only(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path))  # the encoder cache
    rows = [(t, "translation", "autoj_scenarios") for t in TRANSLATE]
    rows += [(t, "code_generation", "autoj_scenarios") for t in CODE]
    rows += [(t + " Thanks.", "code_generation", "routellm_gsm8k") for t in CODE[:4]]
    labels = pd.DataFrame(rows, columns=["prompt", "task", "dataset"])
    config = our_router.router_config({**QUICK, **task_eval.FAST})
    out = encoder.evaluate(labels, config, seeds=[0], n_boot=0)
    held = out["held_out"]
    assert held["n_test"] == 4  # 20% of the 20 real prompts; the benchmark rows only train
    (pred,) = out["predictions"]
    assert set(pred.truth) <= {"translation", "code_generation"} and len(pred.pred) == 4
    assert held["accuracy"]["mean"] >= 0.75, pred  # two tasks that MiniLM tells apart easily
    assert 0.0 < pred.conf.min() <= pred.conf.max() <= 1.0
    # the encoder alone and the static classifier alone, on the same prompts, beside it
    assert set(out["variants"]) == {encoder.ENCODER, encoder.STATIC}
    assert all(v["n_test"] == 4 for v in out["variants"].values())
    table = task_eval.table(out)
    assert len(table) == 3 and table.index[0] == "held-out real prompts"


def test_the_task_encoder_is_fine_tuned_once_per_labels_and_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path))
    rows = [(t, "translation", "autoj_scenarios") for t in TRANSLATE]
    rows += [(t, "code_generation", "autoj_scenarios") for t in CODE]
    labels = pd.DataFrame(rows, columns=["prompt", "task", "dataset"])
    config = our_router.router_config(QUICK)
    fits = []
    real_fit = our_router.fit_task_encoder
    monkeypatch.setattr(
        our_router, "fit_task_encoder", lambda *a, **k: fits.append(1) or real_fit(*a, **k)
    )
    first = our_router.task_encoder(labels, config)
    again = our_router.task_encoder(labels, config)
    assert len(fits) == 1  # the second came from the cache
    assert np.allclose(first.full_proba(CODE[:2]), again.full_proba(CODE[:2]))
    assert again.temperature == first.temperature
    # other labels or other settings: fine-tuned again
    our_router.task_encoder(labels.iloc[:-1], config)
    our_router.task_encoder(labels, our_router.router_config({**QUICK, "enc_epochs": 3}))
    assert len(fits) == 3
    assert our_router.task_encoder(labels, config.with_overrides(task_encoder=False)) is None


def test_dev_measures_on_part_of_the_training_prompts_never_the_test_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path))
    rows = [(t, "translation", "autoj_scenarios") for t in TRANSLATE]
    rows += [(t, "code_generation", "autoj_scenarios") for t in CODE]
    labels = pd.DataFrame(rows, columns=["prompt", "task", "dataset"])
    config = our_router.router_config({**QUICK, **task_eval.FAST})
    splits = []
    real_fit_predict = encoder.fit_predict
    monkeypatch.setattr(
        encoder,
        "fit_predict",
        lambda feats, train, test, cfg: (
            splits.append((train, test)) or real_fit_predict(feats, train, test, cfg)
        ),
    )
    out = encoder.evaluate(labels, config, seeds=[0], n_boot=0, dev=True)
    ((train, dev),) = splits
    _, test = task_eval.real_split(labels, np.ones(len(labels), bool), 0, 0.2)
    assert len(dev) == 4 and out["held_out"]["n_test"] == 4  # a quarter of the 16 that train
    assert not set(dev) & set(test) and not set(train) & set(test) and not set(train) & set(dev)
    assert len(train) + len(dev) + len(test) == len(labels)
