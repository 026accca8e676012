"""The routing decision's task classifier when the router has a task encoder (config.task_encoder):
the fine-tuned MiniLM encoder (`inferroute.encoder`) blended with the static classifier
(config.enc_static_weight), measured on the held-out real prompts of `evals.task_eval` (issue #12).

Each seed fits the parts exactly as `evals train` does on that seed's training part: the static
classifier (`fit_task_classifier`), the encoder (`our_router.task_encoder`: the same label
selection, weights, calibration slice and int8 ONNX export, cached on disk) and the blend's
temperature (`fit_static_blend`), then predicts the held-out real prompts the way the router
serves them. The encoder alone and the static classifier alone are reported beside it. Settings
are the router config's keys (`--set enc_...`, `--set clf_...`).

    python -m evals task-eval --encoder [--seeds 3] [--set enc_static_weight=0.3] [--dev]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from evals import metrics as M
from evals import our_router, task_eval

logger = logging.getLogger(__name__)

DEV_FRAC = 0.25  # of a training part's real prompts, with `dev`
SERVED, ENCODER, STATIC = "encoder + static (served)", "encoder alone", "static classifier alone"


def fit_predict(
    feats: task_eval.Features,
    train: NDArray[np.int64],
    test: NDArray[np.int64],
    config: Any,
) -> dict[str, task_eval.Predictions]:
    """Predictions on `test` rows of the served blend, the encoder alone and the static classifier
    alone, every part fitted on `train` rows."""
    labels = feats.labels
    chosen = our_router.select_labels(labels.iloc[train], config)
    rows = chosen.index.to_numpy()
    texts = labels["prompt"].astype(str).tolist()
    r_texts, t_texts = [texts[i] for i in rows], [texts[i] for i in test]
    r_dense = feats.dense(rows, rows)
    n_emb = feats.emb.shape[1]
    clf = our_router.fit_task_classifier(r_dense, r_texts, chosen, config, n_emb)
    enc = our_router.task_encoder(labels.iloc[train], config)
    enc = our_router.fit_static_blend(enc, r_dense, r_texts, chosen, config, n_emb)
    p, s = clf.proba_and_support(feats.dense(test, rows), t_texts)
    truth = labels["task"].iloc[test].astype(str).tolist()
    static = clf.with_support(p, s)
    probas = {
        SERVED: enc.route_proba(t_texts, p, s, static),  # the cascade as served
        ENCODER: enc.with_blend(0.0, 1.0).route_proba(t_texts, p, s),
        STATIC: static,
    }
    return {
        name: task_eval.Predictions(
            truth, [our_router.TASK_NAMES[j] for j in q.argmax(1)], q.max(1).astype(np.float64)
        )
        for name, q in probas.items()
    }


def evaluate(
    labels: pd.DataFrame,
    router_config: Any,
    seeds: Sequence[int] = (0, 1, 2),
    test_frac: float = 0.2,
    n_boot: int = 1000,
    dev: bool = False,
) -> dict[str, Any]:
    """The served blend on the same held-out real prompts as `task_eval.evaluate` (same labels,
    same `real_split` per seed), summarised the same way; `variants` holds the encoder alone and
    the static classifier alone (no leave-one-source-out: one fine-tuning per source would not
    fit this machine's time). With `dev`, on a dev quarter of each seed's training part instead
    (its real prompts, stratified; the rest trains): to choose settings on, never the test
    prompts that are reported."""
    feats = task_eval.Features.build(labels, router_config)
    real = our_router.is_real(feats.labels, router_config)
    held: dict[str, list[task_eval.Predictions]] = {SERVED: [], ENCODER: [], STATIC: []}
    for seed in seeds:
        train, test = task_eval.real_split(feats.labels, real, int(seed), test_frac)
        if dev:
            inner, held_dev = task_eval.real_split(
                feats.labels.iloc[train], real[train], int(seed), DEV_FRAC
            )
            train, test = train[inner], train[held_dev]
        config = router_config.with_overrides(seed=int(seed))
        for name, pred in fit_predict(feats, train, test, config).items():
            held[name].append(pred)
            logger.info(
                "%s, held-out real prompts, seed %d: %s", name, seed, task_eval.scores(pred)
            )
    served = held[SERVED]
    out: dict[str, Any] = {"held_out": task_eval.summarise(served, n_boot), "seeds": list(seeds)}
    out["held_out"]["confusion"] = M.confusion_matrix(
        [t for p in served for t in p.truth],
        [t for p in served for t in p.pred],
        task_eval.task_labels(),
    ).tolist()
    out["predictions"] = served
    out["variants"] = {name: task_eval.summarise(held[name], n_boot) for name in (ENCODER, STATIC)}
    return out
