"""The notebooks as committed: outputs stripped, a papermill `parameters` cell, a python3 kernel.

Running them is `make nbtest` (pytest --nbmake notebooks/, also a line of `make test`): see
notebooks/conftest.py for the CI parameter set and throw-away stores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_the_six_notebooks_exist():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_", "06_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_stripped_and_parameters_cell(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: outputs committed in code cells {dirty}; run nbstripout"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert "FAST = None" in "".join(params[0]["source"])
    first = "".join(code[1]["source"])  # settings come from the tested helper, never inline
    assert "H.setup(FAST)" in first
