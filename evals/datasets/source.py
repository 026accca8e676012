"""Where dataset files come from: the local data directory, or the original public source.

`data_dir()` resolves `INFERBASE_DATA_DIR`. `resolve(path)` returns a readable local file for a path
relative to the data directory: the file itself when the data directory has it, otherwise a copy
fetched from the original public source (the GitHub raw file at the pinned commit recorded in
`data/datasets.yaml`) into a cache directory. Hub datasets go through `load_hub_dataset`.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import logging
import os
import urllib.request
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_PATH = REPO_ROOT / "data" / "datasets.yaml"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{source}"


class DatasetError(Exception):
    """A dataset cannot be loaded (missing file, failed fetch, unknown name)."""


def data_dir() -> Path | None:
    """The local data directory from `INFERBASE_DATA_DIR`, or None (then loaders fetch)."""
    value = os.environ.get("INFERBASE_DATA_DIR")
    return Path(value).expanduser() if value else None


def home_dir() -> Path:
    """`INFERBASE_HOME` (default ~/.cache/inferbase): parquet cache and fetched files live here."""
    value = os.environ.get("INFERBASE_HOME")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "inferbase"


def fetch_dir() -> Path:
    return home_dir() / "fetched"


@cache
def manifest() -> dict[str, Any]:
    with MANIFEST_PATH.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)  # type: ignore[no-any-return]


def file_entry(path: str) -> dict[str, Any]:
    try:
        return manifest()["files"][path]  # type: ignore[no-any-return]
    except KeyError:
        raise DatasetError(f"{path!r} is not listed in {MANIFEST_PATH}") from None


def source_url(path: str) -> str | None:
    """The GitHub raw URL of the original of a data-dir file, or None for derived files."""
    entry = file_entry(path)
    if entry.get("derived"):
        return None
    return RAW_URL.format(repo=entry["repo"], commit=entry["commit"], source=entry["source"])


def _download(url: str, dest: Path) -> None:
    """Download `url` to `dest` (atomic rename). Raises OSError when offline."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=60) as resp, tmp.open("wb") as out:  # noqa: S310
        while chunk := resp.read(1 << 20):
            out.write(chunk)
    tmp.replace(dest)


# The function that fetches a URL into a file; tests monkeypatch it (no network in CI).
fetcher: Callable[[str, Path], None] = _download


def _content_sha16(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    digest = hashlib.sha256()
    with opener(path, "rb") as fh:  # type: ignore[operator]
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def fetch(path: str) -> Path:
    """Fetch the original of data-dir file `path` into the cache; return the local copy."""
    url = source_url(path)
    if url is None:
        raise DatasetError(
            f"{path!r} is a DERIVED file (see data/datasets.yaml); it has no single upstream URL. "
            "Point INFERBASE_DATA_DIR at a copy of the shared data directory."
        )
    entry = file_entry(path)
    # The upstream file is uncompressed; keep its name (so readers infer the format) under a
    # folder per repo and commit.
    dest = fetch_dir() / entry["repo"].replace("/", "__") / entry["commit"][:12] / entry["source"]
    if not dest.exists():
        logger.info("fetching %s from %s", path, url)
        try:
            fetcher(url, dest)
        except OSError as exc:
            raise DatasetError(
                f"cannot fetch {path!r} from {url} ({exc}); the data directory "
                f"({data_dir() or 'INFERBASE_DATA_DIR unset'}) does not have it. Set "
                "INFERBASE_DATA_DIR to the shared data directory or go online."
            ) from exc
        want = entry.get("sha256_16")
        got = _content_sha16(dest)
        if want and got != want:
            dest.unlink()
            raise DatasetError(f"fetched {url} has sha256 {got}..., expected {want}...")
    return dest


def resolve(path: str, root: Path | None = None) -> Path:
    """A readable local file for `path` (relative to the data dir): local, else fetched."""
    root = root if root is not None else data_dir()
    if root is not None and (root / path).is_file():
        return root / path
    return fetch(path)


def resolve_glob(pattern: str, root: Path | None = None) -> list[tuple[str, Path]]:
    """(relative path, local file) for every manifest file matching `pattern`, sorted."""
    names = sorted(p for p in manifest()["files"] if fnmatch.fnmatchcase(p, pattern))
    if not names:
        raise DatasetError(f"no manifest file matches {pattern!r}")
    return [(name, resolve(name, root)) for name in names]


@cache
def file_sha(path: Path, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file's bytes (memoised on path, size and mtime)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sha_of(path: Path) -> str:
    st = path.stat()
    return file_sha(path, st.st_size, st.st_mtime_ns)


def load_hub_dataset(hub_id: str, **kwargs: Any) -> Any:
    """`datasets.load_dataset(hub_id)`, with a clear error when the hub is unreachable."""
    try:
        import datasets  # heavy: imported only when a hub dataset is asked for
    except ImportError as exc:  # pragma: no cover - the research extra installs it
        raise DatasetError("hub datasets need the `datasets` package (extra: research)") from exc
    try:
        return datasets.load_dataset(hub_id, **kwargs)
    except (
        Exception
    ) as exc:  # the hub client raises many types (ConnectionError, OfflineModeIsEnabled)
        raise DatasetError(
            f"cannot load hub dataset {hub_id!r} ({type(exc).__name__}: {exc}); "
            "it is not kept in the shared data directory and the hub is unreachable "
            "(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set, or no network)."
        ) from exc
