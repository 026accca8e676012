"""Task-type classifier over `inferroute.taxonomy` with calibrated confidence.

A multinomial logistic regression over [prompt embedding, standardised text statistics, hashed word
1-2-grams (optionally hashed character 2-4-grams)], with class weights inverse to class frequency:
the labelled prompts are ~95% MMLU / GSM8K / ARC-style benchmark questions, and unweighted the rare
task types (rewriting, brainstorming, chat, extraction: 10-40 prompts each) are mostly predicted as
their frequent neighbours (5-fold CV macro-F1 0.64 unweighted, 0.73 weighted, 0.76 weighted and
refitted on every prompt after calibration; character n-grams
add 0.01 but raised the harness's routing p50 from 1.3 to 8.3 ms, so they are off by default).
Confidence is calibrated by temperature scaling on a held-out calibration split (one scalar, so
the ranking of classes is untouched and the probabilities stay well formed).

Real user prompts (Auto-J's scenario-labelled prompts) are few next to the benchmark questions, so
`source_weights` gives each group (real / benchmark) a fixed share of the loss, classes balanced
within each group; the temperature is then fitted on held-out *real* prompts only (`calibrate_on`),
because that is the traffic whose confidence has to be honest.

Confidence is also lowered far from the training data: the classifier keeps a bank of training
prompt embeddings, and a prompt's support `s` in [0, 1] grows from 0 to 1 as its cosine similarity
to the nearest bank prompt rises from `ood_lo` to `ood_hi` (cuts set from held-out real prompts:
`ood_hi` is their 5% quantile, so 95% of in-distribution prompts get s = 1). The probabilities are
mixed with the uniform distribution, s * p + (1 - s) / K: the predicted class is unchanged, its
confidence falls towards 1/K for gibberish, unseen scripts and formats no training prompt resembles.
The mean static embedding alone misses some of these (a prompt of [UNK] tokens only is close to the
one training prompt in an unseen script; gibberish splits into common word pieces), so a second
term does the same with the share of the prompt's words seen in training (hashed words, 2^20
bits), with its own cuts; the support is the lower of the two.

Every hashed feature reads a long prompt cut to its head and tail (`max_chars`, as the embedder
does: `inferroute.features.clip_text`), in training as in routing, so hashing costs the same at
2,000 tokens as at 1,000 and a 100,000-character paste does not stall a routing call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.optimize import minimize_scalar
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

from inferroute.features import clip_texts
from inferroute.taxonomy import TASK_NAMES

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
OOD_QUANTILE = 0.05  # share of held-out real prompts whose confidence the support term may lower
# The bank keeps at most this many leading embedding dimensions (the static table is PCA-ordered).
# With clf_bank_size <= 2000 the per-prompt matrix-vector product (<= 256k values) stays below
# OpenBLAS's threading threshold: multi-threaded (4000 x 256) it spiked to 40-100 ms at p90 on the
# shared two-core machine, single-threaded it takes ~0.02 ms.
BANK_DIMS = 128


def make_hasher(n_features: int, analyzer: str = "word") -> HashingVectorizer:
    """Hashed word 1-2-grams, or (analyzer="char_wb") character 2-4-grams inside word bounds."""
    return HashingVectorizer(
        n_features=n_features,
        analyzer=analyzer,
        ngram_range=(1, 2) if analyzer == "word" else (2, 4),
        alternate_sign=False,
        norm="l2",
        lowercase=True,
    )


def softmax(z: FloatArray) -> FloatArray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


def with_support(p: FloatArray, s: FloatArray, columns: npt.NDArray[np.int64]) -> FloatArray:
    """s * p + (1 - s) * uniform over `columns` (a classifier's classes among TASK_NAMES, the
    columns of `p`): confidence falls towards 1/K where the training data backs a prompt less."""
    uniform = np.zeros(p.shape[1])
    uniform[columns] = 1.0 / len(columns)
    s2 = np.asarray(s, dtype=np.float64)[:, None]
    out: FloatArray = s2 * p + (1.0 - s2) * uniform
    return out


def source_weights(tasks: Sequence[str], is_real: BoolArray, real_share: float) -> FloatArray:
    """Per-row training weights: the real prompts carry `real_share` of the total weight and the
    benchmark prompts the rest (each group's share to itself when the other is empty); within a
    group every class weighs the same (rare task types count as much as MMLU). Mean weight 1."""
    real = np.asarray(is_real, dtype=bool)
    groups = np.where(real, "real", "benchmark")
    return group_weights(tasks, groups, {"real": real_share, "benchmark": 1.0 - real_share})


def group_weights(
    tasks: Sequence[str], groups: Sequence[str] | npt.NDArray[Any], shares: Mapping[str, float]
) -> FloatArray:
    """Per-row training weights: each group (e.g. real / benchmark / pseudo-labelled) carries its
    share of the total weight, the shares of the groups present renormalised to sum to 1; within a
    group every class weighs the same. Mean weight 1."""
    y = np.asarray(tasks)
    g = np.asarray(groups)
    w = np.zeros(len(y))
    present = [name for name in shares if (g == name).any() and shares[name] > 0]
    total_share = sum(shares[name] for name in present)
    for name in present:
        m = g == name
        share = shares[name] / total_share
        names, counts = np.unique(y[m], return_counts=True)
        for task, n in zip(names, counts, strict=True):
            w[m & (y == task)] = share / (len(names) * n)
    total = w.sum()
    out: FloatArray = w * len(y) / total if total > 0 else np.ones(len(y))
    return out


WORD_BUCKETS = 2**20


def word_counter() -> HashingVectorizer:
    """Word counts hashed into WORD_BUCKETS (the default token pattern: 2+ word characters)."""
    return HashingVectorizer(
        n_features=WORD_BUCKETS, alternate_sign=False, norm=None, lowercase=True
    )


def cuts(values: FloatArray) -> tuple[float, float]:
    """(lo, hi) for `support` from in-distribution values: hi is their OOD_QUANTILE quantile, lo
    as far below it as their median is above it (at least 0.05)."""
    hi = float(np.quantile(values, OOD_QUANTILE))
    return hi - max(float(np.median(values)) - hi, 0.05), hi


def support(sim: FloatArray, lo: float, hi: float) -> FloatArray:
    """0 at or below similarity `lo`, 1 at or above `hi`, linear between."""
    if hi <= lo:
        return np.ones_like(sim)
    out: FloatArray = np.clip((sim - lo) / (hi - lo), 0.0, 1.0)
    return out


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """A batch's hashed text features, computed once and read by every classifier whose hashing
    settings match (the routing classifier and the quality one read the same prompt)."""

    n_hash: int
    n_char: int
    max_chars: int  # the texts were cut to this before hashing (0: whole)
    words_hashed: sparse.csr_matrix  # word 1-2-grams into n_hash buckets
    chars_hashed: sparse.csr_matrix | None  # char 2-4-grams into n_char buckets (n_char > 0)
    word_counts: sparse.csr_matrix | None  # words into WORD_BUCKETS (None: not computed)


@dataclass
class TaskClassifier:
    classes: tuple[str, ...]
    coef: FloatArray  # (n_classes, n_dense + n_hash + n_char)
    intercept: FloatArray  # (n_classes,)
    n_dense: int
    n_hash: int
    temperature: float = 1.0
    n_char: int = 0
    # Out-of-distribution term: unit-norm embeddings (first n_emb dense columns) of training prompts
    # and the similarity cuts of `support`. An empty bank turns the term off.
    bank: npt.NDArray[np.float16] = field(default_factory=lambda: np.zeros((0, 0), np.float16))
    ood_lo: float = 0.0
    ood_hi: float = 0.0
    # Words seen in training: a bit per hashed word (WORD_BUCKETS); a prompt's known-word share
    # has its own cuts. An empty array turns the term off.
    seen_words: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    words_lo: float = 0.0
    words_hi: float = 0.0
    # hashed features read a prompt cut to this many characters, head and tail (0: the whole
    # prompt, as classifiers saved before it did)
    max_chars: int = 0

    def __post_init__(self) -> None:
        self._hasher = make_hasher(self.n_hash)
        self._char_hasher = make_hasher(self.n_char, "char_wb") if self.n_char else None
        self._coef_dense = np.ascontiguousarray(self.coef[:, : self.n_dense].T)
        end = self.n_dense + self.n_hash
        self._coef_hash = np.ascontiguousarray(self.coef[:, self.n_dense : end].T)
        self._coef_char = np.ascontiguousarray(self.coef[:, end:].T)
        self._bank32 = np.ascontiguousarray(self.bank.astype(np.float32).T)
        self._words = word_counter()
        self._seen = self.seen_words.astype(np.float64)

    def _clip(self, texts: Sequence[str]) -> list[str]:
        return clip_texts(texts, self.max_chars)

    def sparse_features(self, texts: Sequence[str]) -> sparse.csr_matrix:
        texts = self._clip(texts)
        parts = [self._hasher.transform(texts)]
        if self._char_hasher is not None:
            parts.append(self._char_hasher.transform(texts))
        return sparse.hstack(parts, format="csr")

    def text_features(self, texts: Sequence[str]) -> TextFeatures:
        """The hashed features `predict_proba` reads, to share with another classifier."""
        texts = self._clip(texts)
        return TextFeatures(
            self.n_hash,
            self.n_char,
            self.max_chars,
            self._hasher.transform(texts),
            None if self._char_hasher is None else self._char_hasher.transform(texts),
            self._words.transform(texts) if len(self.seen_words) else None,
        )

    def _features(self, texts: Sequence[str], feats: TextFeatures | None) -> TextFeatures:
        """`feats` when they were hashed with this classifier's settings, else hashed anew."""
        mine = (self.n_hash, self.n_char, self.max_chars)
        if feats is None or (feats.n_hash, feats.n_char, feats.max_chars) != mine:
            return self.text_features(texts)
        if feats.word_counts is None and len(self.seen_words):
            return replace(feats, word_counts=self._words.transform(self._clip(texts)))
        return feats

    def logits(
        self, dense: npt.NDArray[Any], texts: Sequence[str], feats: TextFeatures | None = None
    ) -> FloatArray:
        f = self._features(texts, feats)
        out: FloatArray = (
            np.asarray(dense, dtype=np.float64) @ self._coef_dense
            + np.asarray(f.words_hashed @ self._coef_hash)
            + self.intercept
        )
        if f.chars_hashed is not None:
            out += np.asarray(f.chars_hashed @ self._coef_char)
        return out

    def nearest_similarity(self, dense: npt.NDArray[Any]) -> FloatArray:
        """Cosine similarity of each embedding to its nearest bank prompt (1 without a bank)."""
        if self.bank.shape[0] == 0:
            return np.ones(len(dense))
        emb = np.asarray(dense[:, : self.bank.shape[1]], dtype=np.float32)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-8)
        out: FloatArray = (emb @ self._bank32).max(axis=1).astype(np.float64)
        return out

    def known_words(self, texts: Sequence[str], feats: TextFeatures | None = None) -> FloatArray:
        """Share of each prompt's words that occur in the training prompts (1 with no words)."""
        if len(self.seen_words) == 0:
            return np.ones(len(texts))
        counts = feats.word_counts if feats is not None else None
        if counts is None:
            counts = self._words.transform(self._clip(texts))
        total = np.asarray(counts.sum(axis=1)).ravel()
        known = np.asarray(counts @ self._seen).ravel()
        out: FloatArray = np.where(total > 0, known / np.maximum(total, 1), 1.0)
        return out

    def support(
        self, dense: npt.NDArray[Any], texts: Sequence[str], feats: TextFeatures | None = None
    ) -> FloatArray:
        """How much the training data backs each prompt, in [0, 1] (see the module docstring):
        the lower of the nearest-neighbour and the known-words terms."""
        near = support(self.nearest_similarity(dense), self.ood_lo, self.ood_hi)
        words = support(self.known_words(texts, feats), self.words_lo, self.words_hi)
        out: FloatArray = np.minimum(near, words)
        return out

    def _proba(self, z: FloatArray, s: FloatArray) -> FloatArray:
        p = softmax(z / self.temperature)
        out: FloatArray = s[:, None] * p + (1.0 - s[:, None]) / p.shape[1]
        return out

    def predict_proba(
        self, dense: npt.NDArray[Any], texts: Sequence[str], feats: TextFeatures | None = None
    ) -> FloatArray:
        """Probabilities over TASK_NAMES order (classes never seen in training get 0). `feats`:
        the texts' hashed features from `text_features` (this or another classifier's; hashed
        anew where their settings differ)."""
        f = self._features(texts, feats)
        return self._full(self._proba(self.logits(dense, texts, f), self.support(dense, texts, f)))

    def proba_and_support(
        self, dense: npt.NDArray[Any], texts: Sequence[str], feats: TextFeatures | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """(temperature-calibrated probabilities over TASK_NAMES *before* the support term, the
        support): for a router that blends them with another classifier's and applies the
        support once. `predict_proba` is s * p + (1 - s) / K of these."""
        f = self._features(texts, feats)
        s = self.support(dense, texts, f)
        return self._full(softmax(self.logits(dense, texts, f) / self.temperature)), s

    def with_support(self, p: FloatArray, s: FloatArray) -> FloatArray:
        """s * p + (1 - s) / K over this classifier's K classes (`p` over TASK_NAMES)."""
        return with_support(p, s, np.array([TASK_NAMES.index(c) for c in self.classes]))

    def _full(self, p: FloatArray) -> FloatArray:
        full = np.zeros((p.shape[0], len(TASK_NAMES)))
        for j, name in enumerate(self.classes):
            full[:, TASK_NAMES.index(name)] = p[:, j]
        return full

    @classmethod
    def fit(
        cls,
        dense: npt.NDArray[Any],
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        c: float,
        n_hash: int,
        calibration: str,
        seed: int,
        n_char: int = 0,
        balanced: bool = False,
        refit: bool = False,
        sample_weight: FloatArray | None = None,
        calibrate_on: BoolArray | None = None,
        n_emb: int = 0,
        bank_size: int = 0,
        max_chars: int = 0,
    ) -> TaskClassifier:
        """`balanced` weights classes inversely to their frequency (rare task types count as much
        as MMLU in the loss) unless `sample_weight` gives every row its weight; `n_char` > 0 adds
        hashed character n-grams beside the word n-grams; `refit` fits the weights again on every
        prompt once the temperature is set on the calibration split (a rare type with 10 prompts
        otherwise loses 2 of them to calibration). `calibrate_on` marks the rows the calibration
        split is drawn from (20% of all rows when None, 25% of the marked rows otherwise).
        `n_emb` > 0 with `bank_size` > 0 keeps up to `bank_size` training embeddings (the first
        `n_emb` dense columns, at most BANK_DIMS; half of them marked rows) for the
        out-of-distribution term. `max_chars` > 0: hashed features read each text cut to its
        head and tail (`clip_text`), here and when the classifier predicts."""
        texts = clip_texts(texts, max_chars)
        y = np.asarray(labels)
        rng = np.random.default_rng(seed)
        eligible = np.ones(len(y), bool) if calibrate_on is None else np.asarray(calibrate_on)
        frac = 0.2 if calibrate_on is None else 0.25
        is_cal = eligible & (rng.random(len(y)) < (frac if calibration == "temperature" else 0.0))
        classes = tuple(sorted(set(y.tolist())))
        parts = [sparse.csr_matrix(dense), make_hasher(n_hash).transform(texts)]
        if n_char:
            parts.append(make_hasher(n_char, "char_wb").transform(texts))
        x = sparse.hstack(parts, format="csr")
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        lr = LogisticRegression(
            C=c,
            max_iter=2000,
            random_state=seed,
            class_weight="balanced" if balanced and w is None else None,
            warm_start=True,  # the refit on every prompt starts from the calibration-split fit
        )
        lr.fit(x[~is_cal], y[~is_cal], sample_weight=None if w is None else w[~is_cal])

        def weights(fitted: LogisticRegression) -> tuple[FloatArray, FloatArray]:
            coef = np.zeros((len(classes), x.shape[1]))
            intercept = np.full(len(classes), -30.0)  # a class missing from the fit: never chosen
            rows, biases = fitted.coef_, fitted.intercept_
            if len(fitted.classes_) == 2:  # one logit for the second class: softmax([0, z])
                rows, biases = np.vstack([0 * rows, rows]), np.concatenate([0 * biases, biases])
            for j, name in enumerate(fitted.classes_):
                k = classes.index(str(name))
                coef[k] = rows[j]
                intercept[k] = biases[j]
            return coef, intercept

        def bank_of(rows: BoolArray) -> npt.NDArray[np.float16]:
            if n_emb <= 0 or bank_size <= 0:
                return np.zeros((0, 0), np.float16)
            # half marked (real) rows, half the rest; a short group leaves its places to the other
            idx = np.flatnonzero(rows)
            marked = eligible[idx] if calibrate_on is not None else np.zeros(len(idx), bool)
            a, b = rng.permutation(idx[marked]), rng.permutation(idx[~marked])
            n_a = max(bank_size // 2, bank_size - len(b))
            order = np.concatenate([a[:n_a], b[: bank_size - min(n_a, len(a))]])
            emb = np.asarray(dense[order[:bank_size], : min(n_emb, BANK_DIMS)], dtype=np.float32)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-8)
            return emb.astype(np.float16)

        coef, intercept = weights(lr)

        def words_of(rows: BoolArray) -> npt.NDArray[np.bool_]:
            if n_emb <= 0 or bank_size <= 0:
                return np.zeros(0, np.bool_)
            counts = word_counter().transform([t for t, m in zip(texts, rows, strict=True) if m])
            out: npt.NDArray[np.bool_] = np.asarray(counts.sum(axis=0)).ravel() > 0
            return out

        model = cls(
            classes,
            coef,
            intercept,
            dense.shape[1],
            n_hash,
            n_char=n_char,
            bank=bank_of(~is_cal),
            seen_words=words_of(~is_cal),
            max_chars=max_chars,
        )
        if is_cal.sum() >= 20:
            z = model.logits(dense[is_cal], [t for t, m in zip(texts, is_cal, strict=True) if m])
            idx = np.array([classes.index(v) for v in y[is_cal]])
            cal_texts = [t for t, m in zip(texts, is_cal, strict=True) if m]
            if model.bank.shape[0]:
                model.ood_lo, model.ood_hi = cuts(model.nearest_similarity(dense[is_cal]))
                model.words_lo, model.words_hi = cuts(model.known_words(cal_texts))
            s = model.support(dense[is_cal], cal_texts)

            def nll(t: float) -> float:
                model.temperature = t
                p = model._proba(z, s)
                return float(-np.log(np.maximum(p[np.arange(len(idx)), idx], 1e-12)).mean())

            res = minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded")
            model.temperature = float(res.x)
            logger.info(
                "task classifier temperature %.3f, support cuts %.3f..%.3f, words %.3f..%.3f",
                model.temperature,
                model.ood_lo,
                model.ood_hi,
                model.words_lo,
                model.words_hi,
            )
            if refit:
                if len(lr.classes_) != len(classes):  # a class only in the calibration split:
                    lr.set_params(warm_start=False)  # the first fit's shape cannot start this one
                coef, intercept = weights(lr.fit(x, y, sample_weight=w))
                every = np.ones(len(y), bool)  # the calibrated temperature and cuts are kept
                model = replace(
                    model,
                    coef=coef,
                    intercept=intercept,
                    bank=bank_of(every),
                    seen_words=words_of(every),
                )
        return model
