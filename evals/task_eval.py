"""The task classifier on real user prompts it never saw: a held-out stratified split of the
real-prompt labels (Auto-J) over several seeds, and leave-one-source-out (every label dataset held
out whole in turn).

The recipe is InferRoute's own (`inferroute.training.select_labels` and `fit_task_classifier`:
source weights, benchmark cap, temperature and support cuts fitted inside the training part). The
static token table is distilled once per evaluation on the text of every labelled prompt (no labels
are used: which tokens get a row and their IDF); everything supervised is fitted per split.

    python -m evals task-eval [--seeds 3] [--fast]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from evals import metrics as M

logger = logging.getLogger(__name__)

METRICS = ("accuracy", "macro_f1", "ece")
# A quick recipe (tests, the notebooks' FAST path): input-embedding table, fewer benchmark labels.
FAST: dict[str, Any] = {
    "static_source": "input",
    "static_dim": 64,
    "clf_max_per_class": 150,
    "clf_hash_features": 2**14,
}


@dataclass
class Predictions:
    """One evaluation split: true and predicted tasks, confidence (max probability)."""

    truth: list[str]
    pred: list[str]
    conf: NDArray[np.float64]

    def correct(self) -> NDArray[np.float64]:
        return np.array([p == t for p, t in zip(self.pred, self.truth, strict=True)], np.float64)


def task_labels() -> list[str]:
    from evals.our_router import TASK_NAMES

    return list(TASK_NAMES)


def scores(p: Predictions) -> dict[str, float]:
    """Accuracy, macro-F1 over the 15 tasks (those in truth or prediction) and ECE."""
    return {
        "accuracy": float(p.correct().mean()) if p.truth else float("nan"),
        "macro_f1": M.macro_f1(p.truth, p.pred, task_labels()),
        "ece": M.ece(p.conf, p.correct()) if p.truth else float("nan"),
    }


def _codes(p: Predictions) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    names = {n: i for i, n in enumerate(task_labels())}
    return (
        np.array([names[t] for t in p.truth], dtype=np.int64),
        np.array([names[t] for t in p.pred], dtype=np.int64),
    )


def _fast_scores(
    t: NDArray[np.int64], p: NDArray[np.int64], conf: NDArray[np.float64], k: int
) -> tuple[float, float, float]:
    """(accuracy, macro-F1, ECE) on integer codes: the same definitions as `scores`, vectorised
    for the bootstrap."""
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp, den = np.diag(cm), cm.sum(0) + cm.sum(1)
    present = den > 0
    f1 = float((2 * tp[present] / den[present]).mean()) if present.any() else 0.0
    correct = (t == p).astype(np.float64)
    bins = np.clip((conf * 10).astype(int), 0, 9)
    gap = np.abs(np.bincount(bins, correct, 10) - np.bincount(bins, conf, 10))
    return float(correct.mean()), f1, float(gap.sum() / max(len(t), 1))


def bootstrap_interval(
    splits: Sequence[Predictions], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile interval of the seed-mean of each metric, resampling every split's prompts."""
    rng = np.random.default_rng(seed)
    k = len(task_labels())
    coded = [(*_codes(p), p.conf) for p in splits]
    draws = np.zeros((n_boot, len(METRICS)))
    for b in range(n_boot):
        per_seed = []
        for t, p, conf in coded:
            idx = rng.integers(0, len(t), len(t))
            per_seed.append(_fast_scores(t[idx], p[idx], conf[idx], k))
        draws[b] = np.mean(per_seed, axis=0)
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    return {
        name: (float(np.quantile(draws[:, j], lo)), float(np.quantile(draws[:, j], hi)))
        for j, name in enumerate(METRICS)
    }


def summarise(splits: Sequence[Predictions], n_boot: int = 1000) -> dict[str, Any]:
    """Mean, min and max over seeds, a bootstrap interval, and per-class F1 (mean over seeds)."""
    per = [scores(p) for p in splits]
    out: dict[str, Any] = {"n_test": int(np.mean([len(p.truth) for p in splits]))}
    ci = bootstrap_interval(splits, n_boot) if n_boot else {}
    for k in METRICS:
        vals = [s[k] for s in per]
        out[k] = {
            "mean": float(np.mean(vals)),
            "min": float(np.min(vals)),
            "max": float(np.max(vals)),
        }
        if k in ci:
            out[k]["ci"] = ci[k]
    classes: dict[str, list[dict[str, float]]] = {}
    for p in splits:
        for name, row in M.per_class_f1(p.truth, p.pred, task_labels()).items():
            classes.setdefault(name, []).append(row)
    out["per_class"] = {
        name: {
            "f1": float(np.mean([r["f1"] for r in rows])),
            "support": float(np.mean([r["support"] for r in rows])),
        }
        for name, rows in classes.items()
        if any(r["support"] for r in rows)
    }
    return out


@dataclass
class Features:
    """Every labelled prompt embedded once (the distilled embedder is shared by all splits)."""

    labels: pd.DataFrame
    emb: NDArray[np.float32]
    stats: NDArray[np.float32]
    embedder: Any = field(repr=False)
    # unlabelled real prompts (ShareGPT) for self-training: texts, embeddings, text statistics
    u_texts: list[str] = field(default_factory=list, repr=False)
    u_emb: NDArray[np.float32] | None = field(default=None, repr=False)
    u_stats: NDArray[np.float32] | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        labels: pd.DataFrame,
        config: Any,
        embedder: Any = None,
        unlabelled: Sequence[str] = (),
    ) -> Features:
        """`unlabelled` prompts are embedded for the recipe's self-training (as in
        `inferroute.train`, they are not in the static table's corpus)."""
        from evals.our_router import StaticEmbedder, text_stats

        labels = labels[labels["task"].notna() & labels["prompt"].notna()].reset_index(drop=True)
        texts = labels["prompt"].astype(str).tolist()
        u_texts = sorted(set(map(str, unlabelled)))
        if embedder is None:
            embedder = StaticEmbedder.distill(
                texts,
                config.static_dim,
                config.max_chars,
                config.max_tokens,
                config.seed,
                config.static_source,
            )
        if not u_texts:
            return cls(labels, embedder.encode(texts), text_stats(texts), embedder)
        return cls(
            labels,
            embedder.encode(texts),
            text_stats(texts),
            embedder,
            u_texts,
            embedder.encode(u_texts),
            text_stats(u_texts),
        )

    def dense(self, rows: NDArray[np.int64], train: NDArray[np.int64]) -> NDArray[np.float32]:
        mu, sd = self.stats[train].mean(0), self.stats[train].std(0) + 1e-6
        return np.hstack([self.emb[rows], (self.stats[rows] - mu) / sd]).astype(np.float32)

    def fit_predict(self, train: NDArray[np.int64], test: NDArray[np.int64], config: Any) -> Any:
        """(classifier, Predictions on `test`) for the recipe fitted on `train` rows."""
        from evals.our_router import TASK_NAMES, fit_task_classifier, select_labels

        chosen = select_labels(self.labels.iloc[train], config)
        rows = chosen.index.to_numpy()
        texts = self.labels["prompt"].astype(str).tolist()
        unlabelled = None
        if self.u_emb is not None and self.u_stats is not None and self.u_texts:
            mu, sd = self.stats[rows].mean(0), self.stats[rows].std(0) + 1e-6
            u_dense = np.hstack([self.u_emb, (self.u_stats - mu) / sd]).astype(np.float32)
            unlabelled = (u_dense, self.u_texts)
        clf = fit_task_classifier(
            self.dense(rows, rows),
            [texts[i] for i in rows],
            chosen,
            config,
            self.emb.shape[1],
            unlabelled,
        )
        proba = clf.predict_proba(self.dense(test, rows), [texts[i] for i in test])
        pred = [TASK_NAMES[j] for j in proba.argmax(1)]
        truth = self.labels["task"].iloc[test].astype(str).tolist()
        return clf, Predictions(truth, pred, proba.max(1).astype(np.float64))


def real_split(labels: pd.DataFrame, real: NDArray[np.bool_], seed: int, test_frac: float) -> Any:
    """(train rows, test rows): `test_frac` of the real prompts, stratified by task; the rest of
    the real prompts and every benchmark prompt train."""
    from sklearn.model_selection import train_test_split

    idx = np.flatnonzero(real)
    tasks = labels["task"].to_numpy()[idx]
    counts = pd.Series(tasks).value_counts()
    strata = np.where(pd.Series(tasks).map(counts).to_numpy() >= 2, tasks, "_rare")
    _, test = train_test_split(idx, test_size=test_frac, stratify=strata, random_state=seed)
    test = np.sort(test)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def evaluate(
    labels: pd.DataFrame,
    config: Any,
    seeds: Sequence[int] = (0, 1, 2),
    test_frac: float = 0.2,
    loso: bool = True,
    n_boot: int = 1000,
    embedder: Any = None,
    unlabelled: Sequence[str] = (),
) -> dict[str, Any]:
    """Held-out real prompts over `seeds`, and leave-one-source-out, as nested dicts.
    `unlabelled`: unlabelled real prompts (ShareGPT) for the recipe's self-training."""
    from evals.our_router import is_real

    feats = Features.build(labels, config, embedder, unlabelled)
    real = is_real(feats.labels, config)
    held: list[Predictions] = []
    last: Any = None
    for seed in seeds:
        cfg = config.with_overrides(seed=int(seed))
        train, test = real_split(feats.labels, real, int(seed), test_frac)
        clf, pred = feats.fit_predict(train, test, cfg)
        held.append(pred)
        last = (clf, pred)
        logger.info("held-out real prompts, seed %d: %s", seed, scores(pred))
    out: dict[str, Any] = {"held_out": summarise(held, n_boot), "seeds": list(seeds)}
    out["held_out"]["confusion"] = M.confusion_matrix(
        [t for p in held for t in p.truth], [t for p in held for t in p.pred], task_labels()
    ).tolist()
    out["predictions"] = held
    out["classifier"] = last[0] if last else None
    if loso:
        out["loso"] = leave_one_source_out(feats, config, seeds, n_boot)
    return out


def leave_one_source_out(
    feats: Features, config: Any, seeds: Sequence[int], n_boot: int
) -> dict[str, dict[str, Any]]:
    """Each label dataset held out whole in turn (trained on all the others), over `seeds`."""
    out: dict[str, dict[str, Any]] = {}
    datasets = feats.labels["dataset"].astype(str).to_numpy()
    for name in sorted(set(datasets)):
        test = np.flatnonzero(datasets == name)
        train = np.flatnonzero(datasets != name)
        if len(test) < 20:
            continue
        splits = []
        for seed in seeds:
            _, pred = feats.fit_predict(train, test, config.with_overrides(seed=int(seed)))
            splits.append(pred)
        out[name] = summarise(splits, n_boot)
        logger.info("leave out %s: %s", name, {k: out[name][k]["mean"] for k in METRICS})
    return out


def table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per evaluation (held-out real prompts, other classifiers on them, then each
    left-out source): mean [min, max]
    over seeds and the bootstrap interval of each metric."""

    def cell(m: dict[str, Any]) -> str:
        text = f"{m['mean']:.3f} [{m['min']:.3f}, {m['max']:.3f}]"
        if "ci" in m:
            text += f" ci {m['ci'][0]:.3f}-{m['ci'][1]:.3f}"
        return text

    rows = [("held-out real prompts", result["held_out"])]
    rows += [(f"held-out real prompts, {k}", v) for k, v in result.get("variants", {}).items()]
    rows += [(f"leave out {k}", v) for k, v in result.get("loso", {}).items()]
    return pd.DataFrame(
        [
            {"evaluation": name, "n": r["n_test"], **{k: cell(r[k]) for k in METRICS}}
            for name, r in rows
        ]
    ).set_index("evaluation")


def confusion(result: dict[str, Any]) -> tuple[NDArray[np.int64], list[str]]:
    """The held-out confusion matrix (all seeds pooled) over the tasks that occur in it."""
    cm = np.asarray(result["held_out"]["confusion"], dtype=np.int64)
    keep = (cm.sum(0) + cm.sum(1)) > 0
    names = [n for n, k in zip(task_labels(), keep, strict=True) if k]
    return cm[np.ix_(keep, keep)], names


def confidence_and_correct(
    result: dict[str, Any],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Every held-out prediction's confidence and whether it was right (all seeds pooled)."""
    preds: list[Predictions] = result["predictions"]
    return np.concatenate([p.conf for p in preds]), np.concatenate([p.correct() for p in preds])


def per_class_table(result: dict[str, Any]) -> pd.DataFrame:
    pc = result["held_out"]["per_class"]
    return pd.DataFrame(pc).T.sort_values("support", ascending=False).round(3)
