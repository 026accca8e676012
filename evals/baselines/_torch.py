"""A small masked-BCE training loop shared by the MF and classifier baselines (torch, CPU)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray


def train_masked(
    forward: Callable[..., object],
    params: list[object],
    x: NDArray[np.float32],
    y: NDArray[np.float64],
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int = 256,
    seed: int = 0,
) -> None:
    """Minimise BCE(sigmoid(forward(x)), y) over the non-NaN entries of y (n, m)."""
    import torch

    torch.set_num_threads(1)  # tiny matmuls: threads only spin on a shared 2-core machine
    torch.manual_seed(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.nan_to_num(y, nan=0.0).astype(np.float32))
    mt = torch.from_numpy(np.isfinite(y).astype(np.float32))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(seed)
    lossf = torch.nn.BCEWithLogitsLoss(reduction="none")
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for s in range(0, len(xt), batch_size):
            idx = perm[s : s + batch_size]
            logits = forward(xt[idx])
            loss = (lossf(logits, yt[idx]) * mt[idx]).sum() / mt[idx].sum().clamp(min=1.0)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
