"""A joint latent-factor quality model over prompts x models (matrix factorisation / IRT style).

Every model m has a vector u_m and a bias b_m; every prompt p gets a latent vector h(p) computed
from its features (prompt embedding, text statistics and the task classifier's probabilities, so the
task type is an input):

    h(p)        = relu(W x(p) + c)
    logit(p, m) = u_m . h(p) + b_m                                  (what routing uses)
    training:     u_m . h(p) + b_m + o_s + o_{m,s}                  (s = the source dataset of p)

It is fitted on every score table at once (all models, all sources), with a masked binary
cross-entropy against the 0-1 scores, so models that never share a prompt still shape the same
prompt space. The per-source terms are the calibration: o_s absorbs a source's scale (a judge that
gives everyone 0.1 against GPT-4-Turbo, a metric on which everyone scores 0.9), and o_{m,s}
(L2-penalised) absorbs how one model fares under one source's judge, so neither leaks into the
model's strength b_m or into h(p). Routing does not know a prompt's source and uses neither term:
a shift common to all models does not change which model is best.

Prediction is two small matrix products per ensemble member (no torch at routing time); training is
plain numpy Adam, a few seconds per member on one core. Several seeds are averaged (`fit_ensemble`):
single fits of a small net on ~10k prompts vary by a few APGR points from seed to seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ARRAYS = ("w", "c", "u", "b")  # the fitted arrays, each with the ensemble member first


def _sigmoid(z: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass
class LatentQualityModel:
    """An ensemble of E fits (different seeds) of the model above; predictions are averaged."""

    models: tuple[str, ...]
    w: npt.NDArray[np.float32]  # (E, n_inputs, hidden)
    c: npt.NDArray[np.float32]  # (E, hidden)
    u: npt.NDArray[np.float32]  # (E, n_models, hidden)
    b: npt.NDArray[np.float32]  # (E, n_models)

    def index(self, model: str) -> int:
        return self.models.index(model)

    def predict(self, x: npt.NDArray[Any], model_idx: Sequence[int]) -> FloatArray:
        """(n, len(model_idx)) expected scores in [0, 1] for inputs x (see `inputs`)."""
        idx = list(model_idx)
        x = np.asarray(x, np.float32)
        out = np.zeros((x.shape[0], len(idx)))
        for e in range(self.w.shape[0]):
            h = np.maximum(x @ self.w[e] + self.c[e], 0.0)
            out += _sigmoid((h @ self.u[e, idx].T + self.b[e, idx]).astype(np.float64))
        result: FloatArray = out / self.w.shape[0]
        return result

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {f"lat_{k}": getattr(self, k) for k in ARRAYS}

    @classmethod
    def from_saved(cls, models: Sequence[str], arr: Any) -> LatentQualityModel:
        return cls(tuple(models), *(arr[f"lat_{k}"] for k in ARRAYS))

    @classmethod
    def stack(cls, fits: Sequence[LatentQualityModel]) -> LatentQualityModel:
        """One ensemble with the members of every fit in `fits` (same models, same inputs)."""
        return cls(fits[0].models, *(np.concatenate([getattr(f, k) for f in fits]) for k in ARRAYS))

    @classmethod
    def fit_ensemble(
        cls,
        x: npt.NDArray[Any],
        scores: npt.NDArray[Any],
        source: npt.NDArray[np.int64],
        models: Sequence[str],
        *,
        members: int = 5,
        seed: int = 0,
        **kwargs: Any,
    ) -> LatentQualityModel:
        """`members` fits with seeds seed * members, seed * members + 1, ...: the ensembles of two
        training seeds share no member (with seed + i, seeds 0 and 1 shared 4 of 5 members and
        the spread over training seeds understated the seed-to-seed noise); see `fit` for the
        other arguments."""
        fits = [
            cls.fit(x, scores, source, models, seed=seed * members + i, **kwargs)
            for i in range(members)
        ]
        return cls.stack(fits)

    @classmethod
    def fit(
        cls,
        x: npt.NDArray[Any],
        scores: npt.NDArray[Any],
        source: npt.NDArray[np.int64],
        models: Sequence[str],
        *,
        hidden: int = 64,
        epochs: int = 40,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        source_penalty: float = 1.0,
        source_terms: str = "zero",
        weight_power: float = 1.0,
        weight_cap: float = 0.0,
        batch_size: int = 256,
        seed: int = 0,
    ) -> LatentQualityModel:
        """Fit on `x` (P, n_inputs), `scores` (P, M) in [0, 1] with NaN where unscored, and the
        source index of every row. A prompt's scores are weighted 1 / (number of models scored on
        it) ** `weight_power`: 1 gives every prompt the same total weight (a source that scored 55
        models does not outweigh one that scored 2), 0 counts every (prompt, model) score once.
        `weight_cap` > 0 then caps a prompt's total weight: with 0 and 11, a prompt scored on up
        to 11 models counts each score once, one scored on 55 (AlpacaEval) counts each 11 / 55.
        `source_penalty` is the L2 weight on o_{m,s}. `source_terms`: "zero" learns the per-source
        offsets starting from 0, "mean" starts o_s at each source's mean level, "none" leaves them
        out. Routing cannot apply o_s (it does not know a prompt's source), and through the sigmoid
        a level shift changes a prompt's strong-minus-weak gap, so offsets that absorb every
        source's level from the start ("mean") hurt the routing ranking on the validation split
        (APGR MMLU 0.67 -> 0.57); "zero" and "none" are within noise of each other."""
        rng = np.random.default_rng(seed)
        x = np.asarray(x, np.float32)
        y = np.nan_to_num(np.asarray(scores, np.float32), nan=0.0)
        mask = np.isfinite(np.asarray(scores, np.float64)).astype(np.float32)
        n_obs = mask.sum(1, keepdims=True)
        mask = mask / np.maximum(n_obs, 1.0) ** weight_power
        if weight_cap > 0:  # a prompt's scores weigh at most `weight_cap` in all
            mask = mask / np.maximum(mask.sum(1, keepdims=True) / weight_cap, 1.0)
        keep = n_obs[:, 0] > 0
        x, y, mask, source = x[keep], y[keep], mask[keep], np.asarray(source)[keep]
        n, d = x.shape
        m = y.shape[1]
        s = int(source.max()) + 1 if len(source) else 1

        def logit_of_mean(sel: npt.NDArray[np.bool_], axis: int | None) -> npt.NDArray[Any]:
            mean = (y[sel] * mask[sel]).sum(axis) / np.maximum(mask[sel].sum(axis), 1e-9)
            clipped = np.clip(mean, 0.02, 0.98)
            logit: npt.NDArray[Any] = np.log(clipped / (1 - clipped))
            return logit

        everything = np.ones(n, bool)
        overall = float(logit_of_mean(everything, None))
        # start each source's offset at its mean level, so the biases start as source-free strengths
        offsets = np.array([logit_of_mean(source == k, None) - overall for k in range(s)])
        if source_terms != "mean":
            offsets[:] = 0.0
        params = {
            "w": (rng.standard_normal((d, hidden)) * np.sqrt(2.0 / d)).astype(np.float32),
            "c": np.zeros(hidden, np.float32),
            "u": (rng.standard_normal((m, hidden)) * 0.01).astype(np.float32),
            "b": logit_of_mean(everything, 0).astype(np.float32),
            "o": offsets.astype(np.float32),
            "om": np.zeros((s, m), np.float32),
        }
        state = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
        decay = {"w", "u"}
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        step = 0
        mean_w = float(mask.sum()) / n
        for _ in range(epochs):
            perm = rng.permutation(n)
            for start in range(0, n, batch_size):
                bi = perm[start : start + batch_size]
                xb, yb, mb, sb = x[bi], y[bi], mask[bi], source[bi]
                a = xb @ params["w"] + params["c"]
                h = np.maximum(a, 0.0)
                z = h @ params["u"].T + params["b"] + params["o"][sb, None] + params["om"][sb]
                g = mb * (_sigmoid(z) - yb) / (mean_w * len(bi))
                grads: dict[str, npt.NDArray[np.float32]] = {
                    "u": g.T @ h,
                    "b": g.sum(0),
                    "o": np.bincount(sb, weights=g.sum(1), minlength=s).astype(np.float32),
                    "om": np.zeros_like(params["om"]),
                }
                np.add.at(grads["om"], sb, g)
                grads["om"] += source_penalty * params["om"]
                da = (g @ params["u"]) * (a > 0)
                grads["w"] = xb.T @ da
                grads["c"] = da.sum(0)
                if source_terms == "none":
                    grads["o"][:] = 0.0
                    grads["om"][:] = 0.0
                step += 1
                for k, p in params.items():
                    m1, m2 = state[k]
                    gk = grads[k].astype(np.float32)
                    m1 *= beta1
                    m1 += (1 - beta1) * gk
                    m2 *= beta2
                    m2 += (1 - beta2) * gk * gk
                    upd = (m1 / (1 - beta1**step)) / (np.sqrt(m2 / (1 - beta2**step)) + eps)
                    if k in decay:
                        p *= 1 - lr * weight_decay
                    p -= lr * upd
        return cls(tuple(models), *(params[k][None] for k in ARRAYS))


def inputs(
    dense: npt.NDArray[Any], task_probs: npt.NDArray[Any], task_scale: float = 1.0
) -> npt.NDArray[np.float32]:
    """The latent model's input: [embedding, standardised text stats, scaled task probabilities]."""
    out: npt.NDArray[np.float32] = np.hstack(
        [np.asarray(dense, np.float32), task_scale * np.asarray(task_probs, np.float32)]
    )
    return out
