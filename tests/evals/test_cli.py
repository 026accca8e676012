"""The CLI end to end on a tiny config: evaluate -> MLflow -> report; bootstrap with and without
data, and its repair of a champion whose artifacts were deleted."""

from __future__ import annotations

import shutil
import subprocess
import sys

import yaml

from evals import experiments, promote, report
from evals.champion import champion_uri, load_error
from evals.cli import main
from evals.suite import CONFIG_DIR, SuiteConfig


def test_evaluate_then_report_from_logged_run(mlflow_store, data_root):
    cfg = (
        SuiteConfig.load(train_datasets=["routerbench_zs"], max_train_prompts_per_dataset=120)
        .only(["routerbench"])
        .capped(60)
    )
    payload = experiments.evaluate(
        cfg, baselines=["random", "knn"], router_uri=None, embedder="static-input"
    )
    assert set(payload["results"]) >= {"random", "knn", "oracle", "zero_router"}
    text = report.report(mlflow_store / "results.md")
    assert "## routerbench" in text and "kNN" in text and "Zero router" in text
    assert (mlflow_store / "results.md").read_text().startswith("# InferRoute results")
    artifacts = list((mlflow_store / "mlartifacts").rglob("routerbench.png"))
    assert artifacts, "the cost-quality plot is logged as an artifact"


def test_bootstrap_without_data_dir_exits_zero(mlflow_store, monkeypatch, capsys):
    monkeypatch.delenv("INFERBASE_DATA_DIR", raising=False)
    assert main(["bootstrap"]) == 0
    assert "prior router" in capsys.readouterr().out


# a tiny suite and router config: RouterBench only, 120 train prompts, 60 judged
TINY_SET = (
    "static_source=input",
    "static_dim=32",
    "clf_max_per_class=60",
    "clf_hash_features=4096",
    "lat_members=1",
    "lat_epochs=3",
    "task_encoder=false",
)


def test_bootstrap_repairs_a_champion_whose_artifacts_were_deleted(
    mlflow_store, data_root, monkeypatch, capsys
):
    suite = yaml.safe_load((CONFIG_DIR / "benchmarks.yaml").read_text(encoding="utf-8"))
    suite["benchmarks"] = [b for b in suite["benchmarks"] if b["name"] == "routerbench"]
    suite["train_datasets"] = ["routerbench_zs"]
    cfg_path = mlflow_store / "suite.yaml"
    cfg_path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    argv = ["bootstrap", "--config", str(cfg_path), "--max-train", "120", "--max-eval", "60"]
    argv += [arg for pair in TINY_SET for arg in ("--set", pair)]
    uri = champion_uri()

    assert main(argv) == 0
    first = promote.alias_version("champion")
    assert first is not None and load_error(uri) is None
    capsys.readouterr()
    assert main(argv) == 0
    assert "loads; nothing to do" in capsys.readouterr().out

    shutil.rmtree(mlflow_store / "mlartifacts")  # the alias is still there, its router is not
    assert load_error(uri) is not None

    monkeypatch.delenv("INFERBASE_DATA_DIR")
    assert main(argv) == 1  # nothing to train a replacement from: a clear failure
    out = capsys.readouterr().out
    assert f"champion v{first}" in out and "does not load" in out and "INFERBASE_DATA_DIR" in out
    assert promote.alias_version("champion") == first

    monkeypatch.setenv("INFERBASE_DATA_DIR", str(data_root))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "does not load" in out and "replaced unloadable champion" in out
    second = promote.alias_version("champion")
    assert second is not None and second != first
    assert load_error(uri) is None
    assert "unloadable" in promote.client().get_model_version("inferroute", first).tags


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "evals", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0
    for cmd in ("train", "evaluate", "tune", "promote", "rollback", "report", "bootstrap"):
        assert cmd in out.stdout


def test_options_reach_the_library(monkeypatch):
    """`evaluate --embedder` and `promote --metric` are passed on (the first was once dropped)."""
    seen = {}
    monkeypatch.setattr(experiments, "evaluate", lambda cfg, **kw: seen.update(kw) or {})
    assert main(["evaluate", "--benchmarks", "routerbench", "--embedder", "static-input"]) == 0
    assert seen["embedder"] == "static-input" and seen["split"] == "test"

    def fake_promote(version, cfg):
        seen["cfg"] = cfg
        return promote.GateDecision(False, "kept", "2", "1")

    monkeypatch.setattr(promote, "promote", fake_promote)
    assert main(["promote", "--version", "2", "--metric", "ece", "--margin", "0.01"]) == 0
    assert (seen["cfg"].metric, seen["cfg"].margin) == ("ece", 0.01)


def test_train_params_are_the_suite_and_the_flat_router_config():
    cfg = SuiteConfig.load(max_train_prompts_per_dataset=120).only(["routerbench"])
    params = experiments.train_params(cfg, {"knn_k": 10})
    assert params["suite.benchmarks"] == "routerbench"
    assert params["suite.max_train_prompts_per_dataset"] == 120
    assert params["router.knn_k"] == 10 and "router.policy_balanced_w_cost" in params


def test_bootstrap_trains_with_the_recipe_train_and_the_seed_report_use(monkeypatch):
    """`make serve` (bootstrap) promotes a router trained on the same suite and router config as
    `evals train` and `evals evaluate --seeds` (it once capped training at 1,500 prompts per
    dataset against the suite's 2,000, so the served router was not one the report measured)."""
    from evals import champion

    seen = {}

    def fake_bootstrap(suite, overrides, **_):
        seen["bootstrap"] = experiments.train_params(suite, overrides)
        return champion.BootstrapOutcome(True, "stub")

    def fake_train(suite, overrides, **_):
        seen["train"] = experiments.train_params(suite, overrides)
        return {}

    def fake_seeds(suite, seeds, router_overrides=None, **_):
        seen["seeds"] = experiments.train_params(suite, router_overrides)
        return {"spread": {}}

    monkeypatch.setattr(champion, "bootstrap", fake_bootstrap)
    monkeypatch.setattr(experiments, "train", fake_train)
    monkeypatch.setattr(experiments, "evaluate_seeds", fake_seeds)
    assert main(["bootstrap"]) == 0
    assert main(["train", "--no-register"]) == 0
    assert main(["evaluate", "--seeds", "0,1,2"]) == 0
    assert seen["bootstrap"] == seen["train"]
    assert {k: v for k, v in seen["seeds"].items() if k != "suite.benchmarks"} == {
        k: v for k, v in seen["train"].items() if k != "suite.benchmarks"
    }
    assert seen["train"]["suite.max_train_prompts_per_dataset"] == 2000
