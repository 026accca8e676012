"""Benchmark datasets for training and judging InferRoute, as one long table.

    from evals import datasets
    scores = datasets.load_scores()          # one row per (prompt, model), score in [0, 1]
    labels = datasets.load_task_labels()     # labelled prompts for the task classifier
    datasets.summary(scores)                 # prompts / models / rows per dataset

Files are read from `INFERBASE_DATA_DIR` (the shared data directory, see its MANIFEST.md) or fetched
from their original public source; see data/datasets.yaml. The column contract is in `schema.py`
and docs/data.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

# Importing the loader modules registers their datasets (so they are imported for that alone).
from . import (  # noqa: F401
    alpaca_eval,
    autoj,
    flask_eval,
    hub,
    just_eval,
    labels,
    llmrouter,
    priors,
    routellm,
    routerarena,
    routerbench_mini,
    routerdc,
    sharegpt,
    traffic_log,
)
from .priors import load_leaderboards, load_output_lengths, load_prices
from .registry import DATASETS, DatasetSpec, get_spec
from .schema import LABEL_COLUMNS, SCORE_COLUMNS, base_model, canonical_model
from .source import DatasetError, data_dir
from .splits import leave_one_dataset_out, split_by_prompt

__all__ = [
    "DATASETS",
    "DatasetError",
    "LABEL_COLUMNS",
    "SCORE_COLUMNS",
    "base_model",
    "canonical_model",
    "data_dir",
    "dataset_version",
    "leave_one_dataset_out",
    "list_datasets",
    "load",
    "load_scores",
    "load_leaderboards",
    "load_output_lengths",
    "load_prices",
    "load_task_labels",
    "load_difficulty",
    "load_answer_lengths",
    "split_by_prompt",
    "summary",
]


def list_datasets(kind: str | None = None, include_hub: bool = False) -> list[str]:
    """Registered dataset names, optionally only one kind ("scores", "anchor", "labels").

    Hub-only datasets (not in the shared data directory) are listed only with `include_hub`; the
    operator's own traffic (kind "preferences", exported from a gateway: traffic_log) only when
    that kind is asked for.
    """
    return [
        n
        for n, s in DATASETS.items()
        if (s.kind == kind if kind is not None else s.kind != "preferences")
        and (include_hub or not s.hub)
    ]


def load(name: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """One dataset as the long table (score datasets) or the label table (label datasets)."""
    from .registry import finish, load_raw

    spec: DatasetSpec = get_spec(name)
    root = Path(data_dir) if data_dir is not None else None
    return finish(spec, load_raw(spec, root))


def load_scores(
    names: Iterable[str] | None = None,
    data_dir: str | Path | None = None,
    include_hub: bool = False,
) -> pd.DataFrame:
    """The score datasets concatenated (default: every kind="scores" dataset; anchors on request).

    (prompt_id, model) is unique within a dataset; two datasets that share prompts (alpaca_eval1 and
    alpaca_eval2) may both score a model on them, so key on (dataset, prompt_id, model).
    """
    names = list_datasets("scores", include_hub) if names is None else list(names)
    frames = [load(n, data_dir) for n in names]
    return pd.concat(frames, ignore_index=True)


def load_task_labels(
    names: Iterable[str] | None = None,
    data_dir: str | Path | None = None,
    include_hub: bool = False,
    mapped_only: bool = False,
) -> pd.DataFrame:
    """Every labelled prompt: `prompt_id, dataset, prompt, task_label, task`.

    Sources: the label datasets (MT-Bench and Vicuna categories, WizardLM skills, self-instruct
    apps, Arena-Hard clusters, GSM8K train, HumanEval; Dolly-15k when `include_hub`) plus the
    labels of the score datasets (dataset of origin, LLMRouter tasks, RouterArena categories, ...),
    one row per (dataset, prompt_id). Prompts without text are left out. `task` is None where the
    map says the label is not a task type (with a reason in data/task_map.yaml); `mapped_only`
    drops those rows.
    """
    if names is None:
        # Label datasets first, so a prompt they share with a score dataset is listed under them.
        names = sorted(
            (
                n
                for n, s in DATASETS.items()
                if s.label_source is not None and s.kind != "anchor" and (include_hub or not s.hub)
            ),
            key=lambda n: DATASETS[n].kind != "labels",
        )
    frames = []
    for name in names:
        df = load(name, data_dir)
        df = df[df["prompt"].notna() & df["task_label"].notna()]
        frames.append(df.drop_duplicates(["prompt_id"])[list(LABEL_COLUMNS)])
    out = pd.concat(frames, ignore_index=True)
    # A prompt shared by several datasets (MT-Bench questions, AlpacaEval 1 and 2, GSM8K test) is
    # listed once, from the first dataset that has it (ids are shared, so the label is the same).
    out = out.drop_duplicates("prompt_id").reset_index(drop=True)
    if mapped_only:
        out = out[out["task"].notna()].reset_index(drop=True)
    return out


def load_difficulty(data_dir: str | Path | None = None, training: bool = True) -> pd.DataFrame:
    """Prompts with a human or GPT-4 difficulty label on a 0-1 scale: FLASK's five levels and
    just-eval's easy / medium / hard. Columns: the DIFFICULTY_COLUMNS of the schema.

    `training` drops just-eval's MT-Bench prompts (MT-Bench is an evaluation)."""
    df = pd.concat([load("flask", data_dir), load("just_eval_tags", data_dir)], ignore_index=True)
    if training:
        df = df[~df["subset"].isin(just_eval.TRAIN_EXCLUDE_SUBSETS)]
    return df[df["prompt"].notna()].reset_index(drop=True)


def load_answer_lengths(data_dir: str | Path | None = None, training: bool = True) -> pd.DataFrame:
    """Per-model answer lengths on real prompts, in tokens: just-eval (its `num_tokens` where
    counted), FLASK and AlpacaEval (characters / CHARS_PER_TOKEN). Columns: source, prompt_id,
    prompt, model (canonical), output_tokens. `training` drops just-eval's MT-Bench prompts."""
    from evals.our_router import CHARS_PER_TOKEN

    frames = []
    for name in ("just_eval_outputs", "flask_outputs"):
        df = load(name, data_dir)
        if training:
            df = df[~df["subset"].isin(just_eval.TRAIN_EXCLUDE_SUBSETS)]
        frames.append(df.rename(columns={"dataset": "source"}))
    frames.append(load_output_lengths(data_dir))
    out = pd.concat(frames, ignore_index=True)
    tokens = out["output_tokens"].where(
        out["output_tokens"].notna(), out["output_chars"] / CHARS_PER_TOKEN
    )
    out = out.assign(output_tokens=tokens)
    out = out[out["output_tokens"].notna() & (out["output_tokens"] > 0) & out["prompt"].notna()]
    cols = ["source", "prompt_id", "prompt", "model", "output_tokens"]
    return out[cols].reset_index(drop=True)


def dataset_version(df: pd.DataFrame) -> str:
    """A content hash of a loaded table (order-independent): log it with every run."""
    row_hashes = pd.util.hash_pandas_object(df, index=False)
    digest = hashlib.sha256(",".join(map(str, df.columns)).encode())
    digest.update(row_hashes.sort_values().to_numpy().tobytes())
    return digest.hexdigest()[:16]


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: rows, prompts, models, mean score, and which cost/latency columns are filled."""
    g = df.groupby("dataset", sort=True)
    out = pd.DataFrame({"rows": g.size(), "prompts": g["prompt_id"].nunique()})
    if "model" in df.columns:
        out["models"] = g["model"].nunique()
        out["mean_score"] = g["score"].mean().round(3)
        for col in ("cost_usd", "prompt_tokens", "latency_ms", "output_chars"):
            out[f"has_{col}"] = g[col].apply(lambda s: bool(s.notna().any()))
    out["tasks"] = g["task"].nunique()
    return out


def task_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Prompts per (dataset, task) as a dataset x task table (NaN task shown as '(none)')."""
    counts = df.assign(task=df["task"].fillna("(none)")).drop_duplicates(["dataset", "prompt_id"])
    return counts.pivot_table(
        index="dataset", columns="task", values="prompt_id", aggfunc="count", fill_value=0
    )
