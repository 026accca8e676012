"""Deterministic splits of the long table.

`split_by_prompt` assigns every prompt to train / val / test by a seeded hash of its id, so a prompt
(all its model rows) is always in exactly one split, and the split of a prompt does not depend on
which other rows are loaded. `group="text"` hashes the normalised prompt text instead, so the same
question shipped by two sources (e.g. GSM8K test in RouteLLM and RouterDC) lands in the same split.
`leave_one_dataset_out` yields (held-out dataset, train mask, test mask) per dataset.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def _unit(key: str, seed: int) -> float:
    h = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def _normalise(text: object) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().lower()


def split_by_prompt(
    df: pd.DataFrame,
    seed: int = 0,
    frac: tuple[float, float, float] = (0.7, 0.15, 0.15),
    group: Literal["prompt_id", "text"] = "prompt_id",
) -> pd.Series:
    """Series indexed by prompt_id -> "train" | "val" | "test" (one entry per prompt_id)."""
    if len(frac) != 3 or any(f < 0 for f in frac) or not np.isclose(sum(frac), 1.0):
        raise ValueError(f"frac must be three non-negative fractions summing to 1, got {frac}")
    prompts = df.drop_duplicates("prompt_id")
    if group == "text":
        keys = [
            _normalise(t) if isinstance(t, str) else pid
            for pid, t in zip(prompts["prompt_id"], prompts["prompt"], strict=True)
        ]
    else:
        keys = list(prompts["prompt_id"])
    u = np.fromiter((_unit(k, seed) for k in keys), dtype="float64", count=len(keys))
    edges = np.cumsum(frac)[:2]
    labels = np.array(SPLITS)[np.searchsorted(edges, u, side="right")]
    return pd.Series(labels, index=pd.Index(prompts["prompt_id"], name="prompt_id"), name="split")


def leave_one_dataset_out(df: pd.DataFrame) -> Iterator[tuple[str, pd.Series, pd.Series]]:
    """For each dataset: (name, train mask, test mask) over df's rows; test = that dataset only.

    Prompts of the held-out dataset that other datasets share (same prompt_id, e.g. AlpacaEval 1 vs
    2) are removed from train too, so no test prompt is ever trained on.
    """
    for name in sorted(df["dataset"].unique()):
        test = df["dataset"] == name
        held = set(df.loc[test, "prompt_id"])
        train = ~test & ~df["prompt_id"].isin(held)
        yield name, train, test
