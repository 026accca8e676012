"""Point the dataset loaders at the shared data directory unless INFERBASE_DATA_DIR is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

if "INFERBASE_DATA_DIR" not in os.environ and SHARED.is_dir():
    os.environ["INFERBASE_DATA_DIR"] = str(SHARED)


@pytest.fixture(scope="session")
def data_root() -> Path:
    value = os.environ.get("INFERBASE_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("no shared data directory (set INFERBASE_DATA_DIR)")
    return Path(value)
