"""The dataset registry and the cached loading path shared by every loader.

A loader is a function `(files: Files) -> DataFrame` registered with `@register(...)`. It returns
the long table with raw model names and raw task labels; `load()` caches that frame as parquet
(keyed by the loader's source code and the SHA-256 of every input file), then applies the canonical
model names (data/models.yaml) and the task map (data/task_map.yaml), which are cheap and not
cached.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from . import source
from .schema import LABEL_COLUMNS, SCORE_COLUMNS, canonical_model, conform, map_tasks
from .source import DatasetError

logger = logging.getLogger(__name__)

Kind = Literal["scores", "anchor", "labels"]
CACHE_FORMAT = "1"  # bump to invalidate every cached frame


class Files:
    """The input files of one loader: data-dir relative names -> readable local paths."""

    def __init__(self, patterns: tuple[str, ...], root: Path | None) -> None:
        self._paths: dict[str, Path] = {}
        for pattern in patterns:
            for name, path in source.resolve_glob(pattern, root):
                self._paths[name] = path

    def path(self, name: str) -> Path:
        try:
            return self._paths[name]
        except KeyError:
            raise DatasetError(f"loader did not declare input file {name!r}") from None

    def glob(self, prefix: str) -> list[tuple[str, Path]]:
        return [(n, p) for n, p in sorted(self._paths.items()) if n.startswith(prefix)]

    def digest(self) -> str:
        h = hashlib.sha256()
        for name, path in sorted(self._paths.items()):
            h.update(f"{name}\0{source.sha_of(path)}\0".encode())
        return h.hexdigest()


Loader = Callable[[Files], pd.DataFrame]


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    name: str
    kind: Kind
    files: tuple[str, ...]
    loader: Loader
    label_source: str | None = None  # key into data/task_map.yaml
    description: str = ""
    tags: tuple[str, ...] = field(default=())


DATASETS: dict[str, DatasetSpec] = {}


def register(
    name: str,
    *,
    kind: Kind,
    files: tuple[str, ...],
    label_source: str | None = None,
    description: str = "",
) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        if name in DATASETS:
            raise DatasetError(f"dataset {name!r} registered twice")
        DATASETS[name] = DatasetSpec(name, kind, files, fn, label_source, description)
        return fn

    return deco


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}") from None


def cache_dir() -> Path:
    return source.home_dir() / "cache" / "datasets"


def _cache_key(spec: DatasetSpec, files: Files) -> str:
    h = hashlib.sha256(CACHE_FORMAT.encode())
    h.update(inspect.getsource(inspect.getmodule(spec.loader)).encode())  # type: ignore[arg-type]
    h.update(inspect.getsource(conform).encode())
    h.update(files.digest().encode())
    return h.hexdigest()[:24]


def load_raw(spec: DatasetSpec, root: Path | None) -> pd.DataFrame:
    """The loader's frame (raw model names and labels), from the parquet cache when possible."""
    files = Files(spec.files, root)
    path = cache_dir() / f"{spec.name}-{_cache_key(spec, files)}.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    frame = spec.loader(files)
    columns = LABEL_COLUMNS if spec.kind == "labels" else SCORE_COLUMNS
    frame = conform(frame.assign(dataset=spec.name), columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return frame


def finish(spec: DatasetSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Apply the canonical model names and the task map (both data files) to a loaded frame."""
    frame = frame.copy()
    if "model" in frame.columns:
        names = {raw: canonical_model(raw) for raw in frame["model"].unique()}
        frame["model"] = frame["model"].map(names).astype("str")
    if spec.label_source is not None:
        frame["task"] = map_tasks(spec.label_source, frame["task_label"])
    return frame
