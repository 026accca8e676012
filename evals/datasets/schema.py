"""The long score table's columns, the canonical model names and the task map (both data in
`data/`)."""

from __future__ import annotations

import fnmatch
import re
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import yaml

from evals.our_router import TASK_NAMES

from .source import REPO_ROOT, DatasetError

MODELS_PATH = REPO_ROOT / "data" / "models.yaml"
TASK_MAP_PATH = REPO_ROOT / "data" / "task_map.yaml"

STR_COLUMNS = ("prompt_id", "dataset", "subset", "prompt", "task_label", "task", "model")
FLOAT_COLUMNS = (
    "score",
    "cost_usd",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "output_chars",
)
SCORE_COLUMNS: tuple[str, ...] = STR_COLUMNS + FLOAT_COLUMNS
LABEL_COLUMNS: tuple[str, ...] = ("prompt_id", "dataset", "prompt", "task_label", "task")
# Real-prompt tables (FLASK, just-eval, ShareGPT): difficulty labels, per-model answer lengths and
# unlabelled prompts. `difficulty` is the label on a 0-1 scale (the source's ordered levels spread
# evenly); `output_tokens` is the answer length in tokens where the source counts them.
DIFFICULTY_COLUMNS: tuple[str, ...] = (
    "prompt_id", "dataset", "subset", "prompt", "task_label", "domain", "skills",
    "difficulty_label", "difficulty",
)  # fmt: skip
LENGTH_COLUMNS: tuple[str, ...] = (
    "prompt_id", "dataset", "subset", "prompt", "model", "output_chars", "output_tokens",
)  # fmt: skip
PROMPT_COLUMNS: tuple[str, ...] = ("prompt_id", "dataset", "prompt")
# Pairwise preferences on an operator's own traffic (evals.datasets.traffic_log): one row per label.
PREFERENCE_COLUMNS: tuple[str, ...] = (
    "record_id", "dataset", "kind", "created_at", "prompt_id", "prompt", "task", "model_a",
    "model_b", "outcome", "source", "judge", "split",
)  # fmt: skip
KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "scores": SCORE_COLUMNS,
    "anchor": SCORE_COLUMNS,
    "labels": LABEL_COLUMNS,
    "difficulty": DIFFICULTY_COLUMNS,
    "lengths": LENGTH_COLUMNS,
    "prompts": PROMPT_COLUMNS,
    "preferences": PREFERENCE_COLUMNS,
}
_FLOATS = frozenset(FLOAT_COLUMNS) | {"difficulty", "output_tokens", "outcome"}


def conform(df: pd.DataFrame, columns: tuple[str, ...] = SCORE_COLUMNS) -> pd.DataFrame:
    """Select `columns` in order with schema dtypes (str with NaN for missing, float64)."""
    out = pd.DataFrame(index=df.index)
    for col in columns:
        if col not in df.columns:
            out[col] = pd.Series(
                np.nan, index=df.index, dtype="float64" if col in _FLOATS else "str"
            )
        elif col in _FLOATS:
            out[col] = pd.to_numeric(df[col], errors="raise").astype("float64")
        else:
            out[col] = df[col].astype("str")
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------- model names


@cache
def _models_doc() -> dict[str, Any]:
    with MODELS_PATH.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)  # type: ignore[no-any-return]


@cache
def model_aliases() -> dict[str, str]:
    """raw name -> canonical name, from data/models.yaml (`models: {name: {aliases: [...]}}`)."""
    out: dict[str, str] = {}
    for canonical, entry in _models_doc()["models"].items():
        for alias in [canonical, *(entry or {}).get("aliases", [])]:
            if alias in out and out[alias] != canonical:
                raise DatasetError(
                    f"models.yaml: {alias!r} maps to {out[alias]!r} and {canonical!r}"
                )
            out[alias] = canonical
    return out


def canonical_model(raw: str) -> str:
    """Canonical spelling of a model name; prompt-style variants keep a ' (variant)' suffix."""
    aliases = model_aliases()
    if raw in aliases:
        return aliases[raw]
    for suffix, label in _models_doc().get("variants", {}).items():
        if raw.endswith(suffix):
            base = raw[: -len(suffix)]
            return f"{aliases.get(base, base)} ({label})"
    return raw


def base_model(name: str) -> str:
    """The model behind a canonical name, without a ' (concise)'-style variant suffix."""
    suffixes = "|".join(re.escape(v) for v in _models_doc().get("variants", {}).values())
    return re.sub(rf" \(({suffixes})\)$", "", name) if suffixes else name


# ---------------------------------------------------------------------------- task map


@cache
def task_map() -> dict[str, dict[str, Any]]:
    """label source -> {label or glob pattern: task name or {task: null, reason}}."""
    with TASK_MAP_PATH.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    sources: dict[str, dict[str, Any]] = {}
    for source, entry in doc["sources"].items():
        labels = entry.get("labels", {})
        for label, target in labels.items():
            task = target.get("task") if isinstance(target, dict) else target
            if task is not None and task not in TASK_NAMES:
                raise DatasetError(f"task_map.yaml {source}/{label}: unknown task {task!r}")
            if task is None and not (isinstance(target, dict) and target.get("reason")):
                raise DatasetError(f"task_map.yaml {source}/{label}: null task needs a reason")
        sources[source] = labels
    return sources


def lookup_task(source: str, label: str) -> tuple[bool, str | None]:
    """(found, task) for one label of one source; exact keys first, then glob patterns in order."""
    labels = task_map().get(source)
    if labels is None:
        return False, None
    target = labels.get(label)
    if target is None:
        for pattern, candidate in labels.items():
            if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(label, pattern):
                target = candidate
                break
    if target is None and label not in labels:
        return False, None
    return True, (target.get("task") if isinstance(target, dict) else target)


def unmapped_labels(source: str, labels: pd.Series) -> list[str]:
    """Labels of `source` that task_map.yaml does not list (neither a task nor null-with-reason)."""
    return sorted(str(x) for x in labels.dropna().unique() if not lookup_task(source, str(x))[0])
