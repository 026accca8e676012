"""The project's MLflow store (`<repo>/mlflow.db`, `<repo>/mlartifacts`): `make serve` fills it.

The test suite must neither read nor write it (tests/conftest.py gives every test a store of its
own). CI checks that with a populated store beside the suite: `python -m tests.project_store seed`
registers a champion there cheaply (a prior router, no training), and the root conftest compares
`fingerprint()` before and after the session.

    python -m tests.project_store seed [STORE ARTIFACTS]  # a champion there (or in STORE)
    python -m tests.project_store show  # its fingerprint (what the session check compares)
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "mlflow.db"
ARTIFACTS = REPO / "mlartifacts"


def fingerprint(store: Path = STORE, artifacts: Path = ARTIFACTS) -> dict[str, str]:
    """Digest of every file of the store and its artifacts (the database and its WAL, byte for
    byte; each artifact by path and content). Empty when there is no project store."""
    out: dict[str, str] = {}
    files = [p for p in (store, Path(f"{store}-wal"), Path(f"{store}-journal")) if p.is_file()]
    if artifacts.is_dir():
        files += sorted(p for p in artifacts.rglob("*") if p.is_file())
    for p in files:
        out[str(p.relative_to(REPO) if p.is_relative_to(REPO) else p)] = hashlib.sha256(
            p.read_bytes()
        ).hexdigest()
    return out


def seed(store: Path = STORE, artifacts: Path = ARTIFACTS) -> str:
    """Register a prior router as `inferroute` and make it `champion` in the store (the project's
    by default), with a suite score no trained router reaches: a test that leaked into this store
    would lose every gate against it, or serve it. Returns the champion version. (Points this
    process's MLflow at the store: run it in a process of its own.)"""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    os.environ["INFERBASE_ARTIFACT_ROOT"] = str(artifacts)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    from evals import promote, tracking
    from inferroute import ModelCard, PriorRouter

    cfg = promote.PromotionConfig()
    if (version := promote.alias_version(promote.CHAMPION, cfg)) is not None:
        return version
    cards = [ModelCard("local/tiny-a", 0.1, 0.3, quality_prior=0.55)]
    cards.append(ModelCard("local/tiny-b", 1.0, 3.0, quality_prior=0.8))
    # the pool of the logged model's input example (inferroute.packaging)
    cards.append(ModelCard("GPT-4-1106-preview", 10.0, 30.0, quality_prior=0.9))
    cards.append(ModelCard("Mixtral-8x7B-Instruct", 0.6, 0.6, quality_prior=0.7))
    router = PriorRouter({c.id: c for c in cards})
    with tracking.run("project-store-seed", "prior", {"router": "prior"}):
        version = promote.register_router(
            router, {"suite_score": 1.0, "routing_p50_ms": 0.01}, cfg, seeded="tests.project_store"
        )
    promote.promote(version, cfg)
    return version


def main(argv: list[str]) -> int:
    if argv[:1] == ["seed"] and len(argv) in (1, 3):
        store, artifacts = (Path(argv[1]), Path(argv[2])) if len(argv) == 3 else (STORE, ARTIFACTS)
        print(f"store {store}: champion is inferroute v{seed(store, artifacts)}")
        return 0
    if argv == ["show"]:
        for path, digest in fingerprint().items():
            print(digest[:16], path)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
