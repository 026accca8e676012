"""LearnedRouter: the trained router (task classifier, quality model, complexity regressor,
lengths).

Models the router was trained on are scored from their own rows. A pool model with no rows is
profiled from its card: `quality_proxy` (a trained model whose profile stands in: same prompt-level
ranking as a model of similar strength) takes precedence; otherwise `quality_prior` (0-1) scaled by
how easy the prompt looks to the trained models on average; otherwise 0.5 scaled the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inferroute.catalog import CardBook
from inferroute.classifier import TaskClassifier
from inferroute.config import RouterConfig
from inferroute.costs import OutputLengths
from inferroute.encoder import TaskEncoder
from inferroute.features import Embedder, load_embedder, text_stats
from inferroute.latent import LatentQualityModel, inputs
from inferroute.policy import Analysis, FloatArray, Router
from inferroute.preferences import PreferenceTerm
from inferroute.scoring import QualityModel
from inferroute.taxonomy import TASK_NAMES
from inferroute.types import ModelCard


class LearnedRouter(Router):
    name = "learned"
    trained = True

    def __init__(
        self,
        config: RouterConfig,
        book: CardBook,
        version: str,
        embedder: Embedder,
        stats_mu: npt.NDArray[np.float32],
        stats_sd: npt.NDArray[np.float32],
        classifier: TaskClassifier,
        quality: QualityModel,
        latent: LatentQualityModel,
        complexity_coef: FloatArray,
        complexity_intercept: float,
        complexity_cuts: tuple[float, float],
        lengths: OutputLengths,
        preferences: PreferenceTerm | None = None,
        quality_classifier: TaskClassifier | None = None,
        encoder: TaskEncoder | None = None,
    ):
        super().__init__(config, book, version)
        # the fine-tuned task classifier that names the decision's task (config.task_encoder);
        # without one the static `classifier` does
        self.encoder = encoder
        self.preferences = preferences
        # the task probabilities the quality models read, when not the routing classifier's
        # (config.lat_task_source "benchmark"; inferroute.training._quality_classifier)
        self.quality_classifier = quality_classifier
        self.embedder = embedder
        self.stats_mu = stats_mu
        self.stats_sd = stats_sd
        self.classifier = classifier
        self.quality = quality
        self.latent = latent
        self.complexity_coef = complexity_coef
        self.complexity_intercept = complexity_intercept
        self.complexity_cuts = complexity_cuts
        self.lengths = lengths
        # seconds (wall, CPU) per training stage, set by inferroute.training.train (not saved)
        self.train_timings: dict[str, tuple[float, float]] = {}
        self._mean_prior = float(quality.task_means.mean())
        self._general = quality.task_means.mean(1)  # each trained model's mean over the tasks

    def known_models(self) -> list[str]:
        return sorted(set(self.book.cards) | set(self.quality.models))

    # --- features -------------------------------------------------------------------------------
    def features(
        self, texts: Sequence[str], turns: Sequence[int] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        emb = self.embedder.encode(texts)
        stats = (text_stats(texts, turns) - self.stats_mu) / self.stats_sd
        return emb, np.hstack([emb, stats]).astype(np.float32)

    def _complexity(self, dense: npt.NDArray[np.float32]) -> FloatArray:
        out: FloatArray = np.clip(dense @ self.complexity_coef + self.complexity_intercept, 0, 1)
        return out

    def task_and_quality_proba(
        self, dense: npt.NDArray[np.float32], texts: Sequence[str]
    ) -> tuple[FloatArray, FloatArray]:
        """(routing, quality models') task probabilities. Routing: the task encoder's when the
        router has one, else the static classifier's. The quality models read what they were
        trained on: the quality classifier's when the router has one, else the static one's. The
        classifiers read one hashing of the texts."""
        qclf, enc = self.quality_classifier, self.encoder
        feats = None if qclf is None and enc is None else self.classifier.text_features(texts)
        if enc is None:
            static = self.classifier.predict_proba(dense, texts, feats)
            return static, static if qclf is None else qclf.predict_proba(dense, texts, feats)
        # the encoder blended with the static classifier (config.enc_static_weight); the static
        # classifier's support (how much the training data backs the prompt) lowers the blend's
        # confidence far from the training data, as it does its own
        # (the cascade: prompts the static classifier is sure of skip the encoder)
        p, s = self.classifier.proba_and_support(dense, texts, feats)
        static = self.classifier.with_support(p, s)
        routing = enc.route_proba(texts, p, s, static)
        if qclf is not None:
            return routing, qclf.predict_proba(dense, texts, feats)
        return routing, static

    def preference_features(self, dense: npt.NDArray[np.float32], probs: FloatArray) -> FloatArray:
        """phi(x) of the traffic preference term: [1, task probabilities, complexity], and the
        prompt embedding too when `pref_embedding` is on (the term then tells prompts apart
        within a task, or where the task classifier is unsure)."""
        ones = np.ones((dense.shape[0], 1))
        parts: list[npt.NDArray[Any]] = [ones, probs, self._complexity(dense)[:, None]]
        if self.config.pref_embedding:
            parts.append(dense[:, : self.embedder.dim])
        return np.hstack(parts).astype(np.float64)

    def with_preferences(self, term: PreferenceTerm | None, version: str) -> LearnedRouter:
        """The same router with `term` correcting its predicted quality (None: without one)."""
        router = copy.copy(self)  # every fitted part is shared, read-only
        router.preferences, router.version, router.train_timings = term, version, {}
        return router

    def _shift(
        self, dense: npt.NDArray[np.float32], probs: FloatArray, models: Sequence[str]
    ) -> FloatArray | None:
        if self.preferences is None:
            return None
        return self.preferences.shift(self.preference_features(dense, probs), models)

    def _resolve(self, model: str, cards: Mapping[str, ModelCard]) -> tuple[int | None, float]:
        """(trained column to use, prior) for a model."""
        if model in self.quality.models:
            return self.quality.index(model), 0.5
        card = cards.get(model) or self.book.card(model)
        if card is not None and card.quality_proxy in self.quality.models:
            return self.quality.index(card.quality_proxy), 0.5
        prior = card.quality_prior if card is not None else None
        return None, 0.5 if prior is None else float(prior)

    def _trained_quality(
        self,
        emb: npt.NDArray[np.float32],
        dense: npt.NDArray[np.float32],
        probs: FloatArray,
        cols: Sequence[int],
    ) -> FloatArray:
        """Blend of the joint latent model and the kNN estimate for trained columns `cols`."""
        blend = self.config.quality_blend
        lat_cols = [self.latent.index(self.quality.models[c]) for c in cols]
        out = np.zeros((emb.shape[0], len(cols)))
        if blend > 0:
            x = inputs(dense, probs, self.config.lat_task_scale)
            out += blend * self.latent.predict(x, lat_cols)
        if blend < 1:
            out += (1 - blend) * self.quality.predict(emb, probs, cols)
        return out

    def _quality(
        self,
        emb: npt.NDArray[np.float32],
        dense: npt.NDArray[np.float32],
        probs: FloatArray,
        models: Sequence[str],
        cards: Mapping[str, ModelCard],
        with_preferences: bool = True,
        shift_probs: FloatArray | None = None,
    ) -> FloatArray:
        """Predicted quality (n, len(models)) from the quality models' task probabilities `probs`
        (task_and_quality_proba); with the traffic term's shift unless told not, whose features read
        `shift_probs` (the routing classifier's; default `probs`)."""
        resolved = [self._resolve(m, cards) for m in models]
        cols = sorted({c for c, _ in resolved if c is not None})
        out = np.zeros((emb.shape[0], len(models)))
        pred = (
            self._trained_quality(emb, dense, probs, cols) if cols else np.zeros((emb.shape[0], 0))
        )
        ease = self.quality.prior(probs, range(len(self.quality.models))).mean(1)
        ease = ease / max(self._mean_prior, 1e-6)
        for j, (col, prior) in enumerate(resolved):
            if col is not None:
                out[:, j] = pred[:, cols.index(col)]
            else:
                out[:, j] = np.clip(prior * ease, 0.0, 1.0)
        if with_preferences:
            shift = self._shift(dense, probs if shift_probs is None else shift_probs, models)
            if shift is not None:
                out = np.clip(out + shift, 0.0, 1.0)
        return out

    # --- Router API -----------------------------------------------------------------------------
    def analyse(
        self, text: str, turns: int, pool: Sequence[str], cards: Mapping[str, ModelCard]
    ) -> Analysis:
        emb, dense = self.features([text], [turns])
        probs, qprobs = self.task_and_quality_proba(dense, [text])
        t = int(probs[0].argmax())
        task = TASK_NAMES[t]
        quality = self._quality(emb, dense, qprobs, pool, cards, shift_probs=probs)[0]
        out_tokens = np.array(
            [
                self.lengths.expected(m, task, getattr(cards.get(m), "quality_proxy", None))
                for m in pool
            ]
        )
        complexity = float(self._complexity(dense)[0])
        general = np.array([self._general_quality(m, cards) for m in pool])
        shift = self._shift(dense, probs, pool)
        if shift is not None:  # the traffic term speaks for the pool's models on any task
            general = np.clip(general + shift[0], 0.0, 1.0)
        return Analysis(task, float(probs[0, t]), complexity, quality, out_tokens, general)

    def _general_quality(self, model: str, cards: Mapping[str, ModelCard]) -> float:
        """Task-agnostic quality: the trained (or proxy) model's mean over tasks, else its prior."""
        col, prior = self._resolve(model, cards)
        return float(self._general[col]) if col is not None else prior

    def expected_output_tokens(self, model: str, task: str, card: ModelCard) -> float:
        return self.lengths.expected(model, task, card.quality_proxy)

    def task_proba(self, prompts: Sequence[str]) -> FloatArray:
        """The routing decision's task probabilities (over TASK_NAMES)."""
        _, dense = self.features(prompts)
        return self.task_and_quality_proba(dense, prompts)[0]

    def classify(self, prompts: Sequence[str]) -> list[tuple[str, float]]:
        probs = self.task_proba(prompts)
        return [(TASK_NAMES[int(p.argmax())], float(p.max())) for p in probs]

    def complexity(self, prompts: Sequence[str]) -> FloatArray:
        _, dense = self.features(prompts)
        return self._complexity(dense)

    def predict_quality(
        self,
        prompts: Sequence[str],
        models: Sequence[str],
        cards: Mapping[str, ModelCard] | None = None,
    ) -> FloatArray:
        emb, dense = self.features(prompts)
        probs, qprobs = self.task_and_quality_proba(dense, prompts)
        return self._quality(emb, dense, qprobs, models, cards or {}, shift_probs=probs)

    # --- persistence (Router.save writes router.json; inferroute.persist reads it) --------------
    def save_state(self, path: Path) -> dict[str, Any]:
        arrays: dict[str, npt.NDArray[Any]] = {
            **_classifier_arrays(self.classifier, "clf"),
            "complexity_coef": self.complexity_coef,
            **self.quality.arrays(),
            **self.latent.arrays(),
        }
        if self.preferences is not None:
            arrays["pref_weights"] = self.preferences.weights
        qclf = self.quality_classifier
        if qclf is not None:
            arrays.update(_classifier_arrays(qclf, "qclf"))
        np.savez(path / "arrays.npz", allow_pickle=False, **arrays)
        return {
            "embedder": self.embedder.save(path),
            "stats": {"mu": self.stats_mu.tolist(), "sd": self.stats_sd.tolist()},
            "classifier": _classifier_meta(self.classifier),
            "quality_classifier": None if qclf is None else _classifier_meta(qclf),
            "quality": self.quality.params(),
            "complexity": {
                "intercept": self.complexity_intercept,
                "cuts": list(self.complexity_cuts),
            },
            "lengths": self.lengths.to_dict(),
            "preferences": None if self.preferences is None else self.preferences.to_dict(),
            "encoder": None if self.encoder is None else self.encoder.save(path),
        }

    @classmethod
    def from_saved(
        cls, path: Path, meta: Mapping[str, Any], config: RouterConfig, book: CardBook
    ) -> LearnedRouter:
        arr = np.load(path / "arrays.npz")
        clf = _load_classifier(meta["classifier"], arr, "clf")
        qmeta = meta.get("quality_classifier")  # routers saved before it existed: none
        qclf = _load_classifier(qmeta, arr, "qclf") if qmeta else None
        emeta = meta.get("encoder")  # routers saved before it existed, or without one: none
        enc = TaskEncoder.load(path, emeta, threads=config.enc_threads) if emeta else None
        cuts = meta["complexity"]["cuts"]
        return cls(
            config,
            book,
            meta["version"],
            load_embedder(path, meta["embedder"]),
            np.asarray(meta["stats"]["mu"], dtype=np.float32),
            np.asarray(meta["stats"]["sd"], dtype=np.float32),
            clf,
            QualityModel.from_saved(meta["quality"], arr),
            LatentQualityModel.from_saved(meta["quality"]["models"], arr),
            arr["complexity_coef"],
            float(meta["complexity"]["intercept"]),
            (float(cuts[0]), float(cuts[1])),
            OutputLengths.from_dict(meta["lengths"]),
            _preferences(meta, arr),
            qclf,
            enc,
        )


def _classifier_arrays(clf: TaskClassifier, prefix: str) -> dict[str, npt.NDArray[Any]]:
    return {
        f"{prefix}_coef": clf.coef,
        f"{prefix}_intercept": clf.intercept,
        f"{prefix}_bank": clf.bank,
        f"{prefix}_seen_words": np.packbits(clf.seen_words),
    }


def _classifier_meta(clf: TaskClassifier) -> dict[str, Any]:
    return {
        "classes": list(clf.classes),
        "n_dense": clf.n_dense,
        "n_hash": clf.n_hash,
        "temperature": clf.temperature,
        "n_char": clf.n_char,
        "ood_lo": clf.ood_lo,
        "ood_hi": clf.ood_hi,
        "words_lo": clf.words_lo,
        "words_hi": clf.words_hi,
        "max_chars": clf.max_chars,
    }


def _load_classifier(c: Mapping[str, Any], arr: Any, prefix: str) -> TaskClassifier:
    return TaskClassifier(
        tuple(c["classes"]),
        arr[f"{prefix}_coef"],
        arr[f"{prefix}_intercept"],
        int(c["n_dense"]),
        int(c["n_hash"]),
        float(c["temperature"]),
        int(c.get("n_char", 0)),
        arr[f"{prefix}_bank"] if f"{prefix}_bank" in arr else np.zeros((0, 0), np.float16),
        float(c.get("ood_lo", 0.0)),
        float(c.get("ood_hi", 0.0)),
        _seen_words(arr, prefix),
        float(c.get("words_lo", 0.0)),
        float(c.get("words_hi", 0.0)),
        int(c.get("max_chars", 0)),  # (classifiers saved before it hashed the whole prompt)
    )


def _preferences(meta: Mapping[str, Any], arr: Any) -> PreferenceTerm | None:
    """The traffic preference term (routers saved without one, or before it existed: None)."""
    saved = meta.get("preferences")
    if not saved or "pref_weights" not in arr:
        return None
    return PreferenceTerm.from_saved(saved, arr["pref_weights"])


def _seen_words(arr: Any, prefix: str = "clf") -> npt.NDArray[np.bool_]:
    """The classifier's known-words bitmap (routers saved before it existed: empty, term off)."""
    if f"{prefix}_seen_words" not in arr:
        return np.zeros(0, np.bool_)
    out: npt.NDArray[np.bool_] = np.unpackbits(arr[f"{prefix}_seen_words"]).astype(np.bool_)
    return out
