"""The evaluation suite: which data, which splits, which benchmarks (configs/benchmarks.yaml).

`load_suite(cfg)` returns the long score table of every dataset the suite trains or judges on,
with a `split` column from `evals.datasets.split_by_prompt` (grouped by prompt text, so a question
shipped by two sources lands in one split), plus each dataset's version hash for the run log.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from evals import datasets as D
from evals.harness import BenchmarkSpec

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True, slots=True)
class SuiteConfig:
    benchmarks: tuple[BenchmarkSpec, ...]
    train_datasets: tuple[str, ...]
    max_train_prompts_per_dataset: int = 3000
    split_seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> SuiteConfig:
        raw = yaml.safe_load((path or CONFIG_DIR / "benchmarks.yaml").read_text(encoding="utf-8"))
        raw.update(overrides)
        specs = tuple(BenchmarkSpec.from_dict(b) for b in raw.pop("benchmarks"))
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k: raw.pop(k) for k in list(raw) if k not in known}
        return cls(
            benchmarks=specs,
            train_datasets=tuple(raw.pop("train_datasets")),
            extra=extra,
            **raw,
        )

    def only(self, names: list[str] | None) -> SuiteConfig:
        if not names:
            return self
        specs = tuple(b for b in self.benchmarks if b.name in names)
        missing = set(names) - {b.name for b in specs}
        if missing:
            raise KeyError(f"unknown benchmarks {sorted(missing)}; known: {self.names()}")
        return dataclasses.replace(self, benchmarks=specs)

    def names(self) -> list[str]:
        return [b.name for b in self.benchmarks]

    def held_out(self) -> set[str]:
        return {d for b in self.benchmarks if b.eval_split == "all" for d in b.datasets}

    def datasets(self) -> list[str]:
        names = list(self.train_datasets)
        names += [d for b in self.benchmarks for d in b.datasets if d not in names]
        return names

    def capped(self, max_prompts: int) -> SuiteConfig:
        """Every benchmark judged on at most `max_prompts` prompts (quick runs)."""
        specs = tuple(dataclasses.replace(b, max_prompts=max_prompts) for b in self.benchmarks)
        return dataclasses.replace(self, benchmarks=specs)

    def on_split(self, split: str) -> tuple[BenchmarkSpec, ...]:
        """The benchmarks judged on `split` ("val" for promotion, "test" for the report)."""
        return tuple(
            b if b.eval_split == "all" else dataclasses.replace(b, eval_split=split)
            for b in self.benchmarks
        )


def load_suite(cfg: SuiteConfig) -> tuple[pd.DataFrame, dict[str, str]]:
    frames, versions = [], {}
    for name in tqdm(cfg.datasets(), desc="load data", disable=None, leave=False):
        df = D.load(name)
        versions[name] = D.dataset_version(df)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    split = D.split_by_prompt(df, seed=cfg.split_seed, group="text")
    df["split"] = df["prompt_id"].map(split).astype(str)
    return df, versions


def train_frame(df: pd.DataFrame, cfg: SuiteConfig) -> pd.DataFrame:
    """Train-split rows of the training datasets (held-out benchmarks removed), capped."""
    held = cfg.held_out()
    held_prompts = set(df.loc[df["dataset"].isin(held), "prompt"])
    rows = df[
        (df["split"] == "train")
        & df["dataset"].isin(cfg.train_datasets)
        & ~df["dataset"].isin(held)
        & ~df["prompt"].isin(held_prompts)
    ]
    cap = cfg.max_train_prompts_per_dataset
    if cap <= 0:
        return rows.reset_index(drop=True)
    keep = []
    rng = np.random.default_rng(cfg.split_seed)
    for _, g in rows.groupby("dataset", sort=True):
        ids = g["prompt_id"].unique()
        if len(ids) > cap:
            ids = rng.choice(np.sort(ids), size=cap, replace=False)
        keep.append(g[g["prompt_id"].isin(set(ids))])
    return pd.concat(keep, ignore_index=True)
