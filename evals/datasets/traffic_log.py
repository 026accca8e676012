"""The `traffic` dataset: an operator's own labelled traffic, exported from the gateway.

    v = export(TrafficAPI(url, key))        # GET /api/v1/traffic/export -> a new dataset version
    records = read_records()                # the latest version's records (or a named one)
    prefs = preferences(records)            # one row per label (vote, verdict, thumbs up/down)
    prefs["split"] = time_split(prefs)      # older records train, the newest `test_frac` evaluate
    D.load("traffic")                       # the same table, split included, from the registry

Versions. The records (pairs with their votes and verdicts, feedback) are written as canonical
JSON lines - records sorted by (created_at, kind, id), nested votes and verdicts by time, keys
sorted, no whitespace - to `$INFERBASE_HOME/datasets/traffic/<version>/records.jsonl`, where the
version is the first 16 hex digits of the file's SHA-256: the same records always give the same
bytes and the same version, whatever order the gateway sent them in. `manifest.json` beside it
counts them; `LATEST` names the newest version. Nothing is written under the shared (read-only)
data directory. The files hold users' prompts and answers: they are as private as the gateway's
capture tables (docs/traffic.md).

The split is by record time: the newest `floor(test_frac * records)` records (by created_at, then
id) are `test` (all labels of one record stay together), the older ones `train`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .registry import Files, register
from .schema import PREFERENCE_COLUMNS
from .source import DatasetError, home_dir

if TYPE_CHECKING:
    from evals.traffic_api import TrafficAPI

NAME = "traffic"
RECORDS, MANIFEST, LATEST = "records.jsonl", "manifest.json", "LATEST"
TEST_FRAC = 0.2


@dataclass(frozen=True, slots=True)
class TrafficVersion:
    version: str
    path: Path  # the version's directory
    counts: Mapping[str, int]


def traffic_dir() -> Path:
    """Where traffic versions live: `$INFERBASE_HOME/datasets/traffic`."""
    return home_dir() / "datasets" / NAME


def _canonical(record: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for key in ("votes", "verdicts"):
        if isinstance(out.get(key), list):
            out[key] = sorted(out[key], key=lambda x: json.dumps(x, sort_keys=True))
            out[key] = sorted(out[key], key=lambda x: str(x.get("created_at", "")))
    return out


def _sort_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(record.get("created_at", "")), str(record.get("kind", "")), str(record["id"]))


def encode(records: Iterable[Mapping[str, Any]]) -> bytes:
    """The canonical bytes of a set of records (order-independent; duplicates by id dropped)."""
    by_id = {str(r["id"]): _canonical(r) for r in records}
    lines = [
        json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        for r in sorted(by_id.values(), key=_sort_key)
    ]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def write_version(
    records: Iterable[Mapping[str, Any]], root: Path | None = None, test_frac: float = TEST_FRAC
) -> TrafficVersion:
    """Write the records as a dataset version (idempotent) and point LATEST at it."""
    root = root or traffic_dir()
    data = encode(records)
    sha = hashlib.sha256(data).hexdigest()
    version = sha[:16]
    path = root / version
    recs = [json.loads(line) for line in data.decode().splitlines()]
    kinds = pd.Series([r.get("kind") for r in recs], dtype="object")
    prefs = preferences(recs)
    split = time_split(prefs, test_frac)
    counts = {
        "records": len(recs),
        "pairs": int((kinds == "pair").sum()),
        "feedback": int((kinds == "feedback").sum()),
        "labels": len(prefs),
        **{
            f"labels_{s}": int((prefs["source"] == s).sum())
            for s in ("vote", "verdict", "feedback")
        },
        "train": int((split == "train").sum()),
        "test": int((split == "test").sum()),
    }
    manifest = {
        "name": NAME,
        "version": version,
        "sha256": sha,
        "test_frac": test_frac,
        "first": recs[0]["created_at"] if recs else None,
        "last": recs[-1]["created_at"] if recs else None,
        "counts": counts,
    }
    path.mkdir(parents=True, exist_ok=True)
    _atomic(path / RECORDS, data)
    _atomic(path / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    _atomic(root / LATEST, (version + "\n").encode())
    return TrafficVersion(version, path, counts)


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def export(
    api: TrafficAPI,
    since: str | None = None,
    root: Path | None = None,
    test_frac: float = TEST_FRAC,
) -> TrafficVersion:
    """`GET /api/v1/traffic/export` as a new dataset version (`python -m evals traffic export`)."""
    return write_version(api.export(since), root, test_frac)


def latest_version(root: Path | None = None) -> str:
    root = root or traffic_dir()
    try:
        return (root / LATEST).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise DatasetError(
            f"no traffic dataset under {root}: run `python -m evals traffic export --gateway URL "
            "--key inf_...` first"
        ) from None


def read_records(version: str | None = None, root: Path | None = None) -> list[dict[str, Any]]:
    root = root or traffic_dir()
    version = version or latest_version(root)
    path = root / version / RECORDS
    if not path.is_file():
        raise DatasetError(f"no traffic version {version!r} under {root}")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def prompt_text(messages: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The text the router reads from a request's messages (InferRoute's own rule)."""
    if not messages:
        return None
    from evals.our_router import messages_to_text

    text = messages_to_text(messages)
    return text or None


def _pid(text: str) -> str:
    return "traffic:" + hashlib.sha1(text.encode()).hexdigest()[:16]


def preferences(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per label: each vote and verdict on a pair (`outcome` 1 a wins, 0 b wins, 0.5
    tie), each thumbs up / down on a captured answer (`model_b` empty, `outcome` 1 up, 0 down).
    Feedback on an uncaptured request (no messages) has no prompt to learn from and is left out,
    and a request rated more than once counts once, by its latest rating (a person who clicked 👍
    and then 👎 changed their mind)."""
    records = list(records)
    latest: dict[str, tuple[str, str]] = {}  # request id -> (created_at, id) of its last rating
    for r in records:
        if r.get("kind") != "pair" and "model_b" not in r and r.get("rating") in (1, -1):
            if prompt_text(r.get("messages")) is not None:
                req = str(r.get("request_id") or r["id"])
                mark = (str(r.get("created_at", "")), str(r["id"]))
                latest[req] = max(latest.get(req, mark), mark)
    rows: list[dict[str, Any]] = []
    for r in records:
        text = prompt_text(r.get("messages"))
        if text is None:
            continue
        base = {
            "record_id": str(r["id"]),
            "dataset": NAME,
            "kind": r.get("kind"),
            "created_at": str(r.get("created_at", "")),
            "prompt_id": _pid(text),
            "prompt": text,
            "task": r.get("task"),
        }
        if r.get("kind") == "pair" or "model_b" in r:
            labels = [("vote", v, None) for v in r.get("votes") or []]
            labels += [("verdict", v, v.get("judge")) for v in r.get("verdicts") or []]
            for source, label, judge in labels:
                winner = label.get("winner")
                if winner not in ("a", "b", "tie"):
                    continue
                rows.append(
                    {
                        **base,
                        "kind": "pair",
                        "model_a": r["model_a"],
                        "model_b": r["model_b"],
                        "outcome": {"a": 1.0, "b": 0.0, "tie": 0.5}[winner],
                        "source": source,
                        "judge": judge,
                    }
                )
        elif r.get("rating") in (1, -1):
            if latest[str(r.get("request_id") or r["id"])][1] != str(r["id"]):
                continue  # rated again later
            rows.append(
                {
                    **base,
                    "kind": "feedback",
                    "model_a": r["model"],
                    "model_b": None,
                    "outcome": 1.0 if r["rating"] == 1 else 0.0,
                    "source": "feedback",
                    "judge": None,
                }
            )
    df = pd.DataFrame(rows, columns=[c for c in PREFERENCE_COLUMNS if c != "split"])
    return df.sort_values(["created_at", "record_id"], kind="stable").reset_index(drop=True)


def time_split(prefs: pd.DataFrame, test_frac: float = TEST_FRAC) -> pd.Series:
    """ "train" / "test" per row: the newest floor(test_frac * records) labelled records are test
    (a record's labels stay together), the older ones train."""
    if not 0.0 <= test_frac < 1.0:
        raise ValueError(f"test_frac must be in [0, 1), got {test_frac}")
    out = pd.Series("train", index=prefs.index, name="split", dtype="str")
    recs = prefs.drop_duplicates("record_id").sort_values(["created_at", "record_id"])
    n_test = int(np.floor(len(recs) * test_frac))
    if len(recs) < 2 or n_test == 0:
        return out
    test_ids = set(recs["record_id"].iloc[len(recs) - n_test :])
    return out.mask(prefs["record_id"].isin(test_ids), "test")


def load_preferences(
    version: str | None = None, root: Path | None = None, test_frac: float = TEST_FRAC
) -> pd.DataFrame:
    """The preference table of a traffic version (default: the latest) with its `split`."""
    prefs = preferences(read_records(version, root))
    return prefs.assign(split=time_split(prefs, test_frac))


@register(
    NAME,
    kind="preferences",
    files=(),
    cached=False,
    description="The operator's own traffic (votes, judge verdicts, thumbs up/down) exported "
    "from the gateway: `python -m evals traffic export`. Latest version; time-ordered split.",
)
def load_traffic(files: Files) -> pd.DataFrame:
    return load_preferences()
