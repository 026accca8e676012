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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from . import source
from .schema import KIND_COLUMNS, canonical_model, conform, lookup_task
from .source import DatasetError

logger = logging.getLogger(__name__)

Kind = Literal["scores", "anchor", "labels", "difficulty", "lengths", "prompts", "preferences"]
CACHE_FORMAT = "2"  # bump to invalidate every cached frame


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
    hub: bool = False  # fetched from the HF hub only (not in the shared data directory)
    cached: bool = True  # False: read afresh each time (data that changes without a file list)


DATASETS: dict[str, DatasetSpec] = {}


def register(
    name: str,
    *,
    kind: Kind,
    files: tuple[str, ...],
    label_source: str | None = None,
    description: str = "",
    hub: bool = False,
    cached: bool = True,
) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        if name in DATASETS:
            raise DatasetError(f"dataset {name!r} registered twice")
        DATASETS[name] = DatasetSpec(name, kind, files, fn, label_source, description, hub, cached)
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


# Frames already read in this process, by cache file (pandas copy-on-write makes sharing safe).
_MEMO: dict[Path, pd.DataFrame] = {}


def load_raw(spec: DatasetSpec, root: Path | None) -> pd.DataFrame:
    """The loader's frame (raw model names and labels), from the parquet cache when possible."""
    files = Files(spec.files, root)
    if not spec.cached:  # its data is not a file list the cache key could hash
        return conform(spec.loader(files).assign(dataset=spec.name), KIND_COLUMNS[spec.kind])
    path = cache_dir() / f"{spec.name}-{_cache_key(spec, files)}.parquet"
    if path in _MEMO:
        return _MEMO[path].copy(deep=False)
    if path.is_file():
        frame = pd.read_parquet(path)
    else:
        frame = spec.loader(files)
        frame = conform(frame.assign(dataset=spec.name), KIND_COLUMNS[spec.kind])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        # Prompts repeat once per model: dictionary-encode them whatever the dictionary size.
        frame.to_parquet(tmp, index=False, dictionary_pagesize_limit=1 << 30)
        tmp.replace(path)
    _MEMO[path] = frame
    return frame.copy(deep=False)


def finish(spec: DatasetSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Apply the canonical model names and the task map (both data files) to a loaded frame."""
    frame = frame.copy(deep=False)
    if "model" in frame.columns:
        frame["model"] = recode(frame["model"], canonical_model)
    if spec.label_source is not None:
        source_name = spec.label_source
        frame["task"] = recode(frame["task_label"], lambda lab: lookup_task(source_name, lab)[1])
    return frame


def recode(values: pd.Series, fn: Callable[[str], str | None]) -> pd.Series:
    """`fn` applied once per distinct value (fast on long tables); missing stays missing."""
    codes, uniques = pd.factorize(values)
    mapped = np.array([fn(str(u)) for u in uniques] + [None], dtype=object)
    return pd.Series(mapped[codes], index=values.index, dtype="str")
