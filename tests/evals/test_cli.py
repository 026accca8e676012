"""The CLI end to end on a tiny config: evaluate -> MLflow -> report; bootstrap without data."""

from __future__ import annotations

import subprocess
import sys

from evals import report, runner
from evals.__main__ import main
from evals.suite import SuiteConfig


def test_evaluate_then_report_from_logged_run(mlflow_store, data_root):
    cfg = (
        SuiteConfig.load(train_datasets=["routerbench_zs"], max_train_prompts_per_dataset=120)
        .only(["routerbench"])
        .capped(60)
    )
    payload = runner.evaluate(
        cfg, baselines=["random", "knn"], router_uri=None, embedder="static-input"
    )
    assert set(payload["results"]) >= {"random", "knn", "oracle", "zero_router"}
    text = report.report(mlflow_store / "results.md")
    assert "## routerbench" in text and "kNN" in text and "Zero router" in text
    assert (mlflow_store / "results.md").read_text().startswith("# InferRoute results")
    artifacts = list((mlflow_store / "mlartifacts").rglob("routerbench.png"))
    assert artifacts, "the cost-quality plot is logged as an artifact"


def test_bootstrap_without_data_dir_exits_zero(monkeypatch, capsys):
    monkeypatch.delenv("INFERBASE_DATA_DIR", raising=False)
    assert main(["bootstrap"]) == 0
    assert "prior router" in capsys.readouterr().out


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "evals", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0
    for cmd in ("train", "evaluate", "tune", "promote", "rollback", "report", "bootstrap"):
        assert cmd in out.stdout
