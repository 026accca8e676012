"""What a gateway prints when it starts: no MLflow warning about the router's type hints (once per
worker, in red), and gunicorn's "Listening at:" line names the address."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOAD = """
import sys
{before}
from serving.router_client import RouterClient
try:
    RouterClient(tracking_uri=sys.argv[1], poll_s=0)._load("models:/inferroute@champion")
except Exception as e:
    print("no champion here:", type(e).__name__)
"""


def load_router_output(tmp_path: Path, before: str = "") -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true"}
    out = subprocess.run(
        [sys.executable, "-W", "default", "-c", LOAD.format(before=before),
         f"sqlite:///{tmp_path}/mlflow.db"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "no champion here" in out.stdout, out.stderr
    return out.stderr


def test_loading_the_router_prints_no_mlflow_type_hint_warning(tmp_path):
    assert "Type hint used in the model's predict function" not in load_router_output(tmp_path)
    # the warning this silences is real: imported outside the router's loading, it shows
    shown = load_router_output(tmp_path, before="import inferroute.packaging")
    assert "Type hint used in the model's predict function" in shown
