"""InferRoute's fine-tuned MiniLM task classifier (`inferroute.encoder`, config.task_encoder),
measured on the held-out real prompts of `evals.task_eval` (issue #12).

Each seed fine-tunes the encoder exactly as `evals train` does (`our_router.fit_task_encoder`:
the same label selection, weights, calibration slice, int8 ONNX export) on that seed's training
part and predicts its held-out real prompts with the int8 graph the router serves, so the numbers
are the served classifier's. Its settings are the router config's enc_* keys (`--set`).

    python -m evals task-eval --encoder [--seeds 3] [--set enc_epochs=2 --set enc_max_len=64]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from evals import metrics as M
from evals import our_router, task_eval

logger = logging.getLogger(__name__)


def fit_predict(
    labels: pd.DataFrame,
    train: NDArray[np.int64],
    test: NDArray[np.int64],
    router_config: Any,
) -> tuple[Any, task_eval.Predictions]:
    """(encoder, `task_eval.Predictions` on `test`) for the encoder fine-tuned on `train` rows."""
    enc = our_router.fit_task_encoder(labels.iloc[train], router_config)
    proba = enc.full_proba(labels["prompt"].iloc[test].astype(str).tolist())
    pred = [our_router.TASK_NAMES[j] for j in proba.argmax(1)]
    truth = labels["task"].iloc[test].astype(str).tolist()
    return enc, task_eval.Predictions(truth, pred, proba.max(1).astype(np.float64))


def evaluate(
    labels: pd.DataFrame,
    router_config: Any,
    seeds: Sequence[int] = (0, 1, 2),
    test_frac: float = 0.2,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The encoder on the same held-out real prompts as `task_eval.evaluate` (same labels, same
    `real_split` per seed), summarised the same way (no leave-one-source-out: one fine-tuning per
    source would not fit this machine's time)."""
    labels = labels[labels["task"].notna() & labels["prompt"].notna()].reset_index(drop=True)
    real = our_router.is_real(labels, router_config)
    held = []
    for seed in seeds:
        train, test = task_eval.real_split(labels, real, int(seed), test_frac)
        config = replace(router_config, seed=int(seed))
        _, pred = fit_predict(labels, train, test, config)
        held.append(pred)
        logger.info("encoder, held-out real prompts, seed %d: %s", seed, task_eval.scores(pred))
    out: dict[str, Any] = {"held_out": task_eval.summarise(held, n_boot), "seeds": list(seeds)}
    out["held_out"]["confusion"] = M.confusion_matrix(
        [t for p in held for t in p.truth],
        [t for p in held for t in p.pred],
        task_eval.task_labels(),
    ).tolist()
    out["predictions"] = held
    return out
