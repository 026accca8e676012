"""MLflow round trips in a temporary sqlite store: tracked runs, the promotion gate, rollback."""

from __future__ import annotations

import mlflow
import pytest

from evals import metrics as M
from evals import promote, tracking
from evals.harness import BenchmarkResult, EvalResult


def test_run_logs_config_commit_datasets_metrics_and_artifacts(mlflow_store):
    res = EvalResult("knn", {"gsm8k": BenchmarkResult("gsm8k", "pair", 10, {"apgr": 0.61})})
    with tracking.run(
        "t-exp", "r1", {"a": 1, "nested": {"b": "x"}}, dataset_versions={"gsm8k": "abc"}
    ) as active:
        tracking.log_metrics(res.flat_metrics())
        tracking.log_json({"hello": [1, 2]}, "results.json")
        run_id = active.info.run_id
    got = mlflow.get_run(run_id)
    assert got.data.params == {"a": "1", "nested.b": "x"}
    assert got.data.metrics["gsm8k.apgr"] == pytest.approx(0.61)
    assert got.data.tags["dataset_version.gsm8k"] == "abc"
    assert got.data.tags["git_commit"] not in ("", "unknown")
    exp = mlflow.get_experiment_by_name("t-exp")
    assert exp.artifact_location.startswith((mlflow_store / "mlartifacts").as_uri())
    assert tracking.latest_run("t-exp").info.run_id == run_id
    assert tracking.load_json_artifact(run_id, "results.json") == {"hello": [1, 2]}


class _Const(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def _register(score: float, p50: float, cfg: promote.PromotionConfig) -> str:
    with tracking.run("t-reg", "cand", {"score": score}):
        info = mlflow.pyfunc.log_model(
            name="router", python_model=_Const(), registered_model_name=cfg.model_name
        )
    version = str(info.registered_model_version)
    promote.tag_version(version, {"suite_score": score, "routing_p50_ms": p50}, cfg)
    return version


def test_gate_is_pure_and_checks_margin_and_speed():
    cfg = promote.PromotionConfig(margin=0.01, max_p50_slowdown=1.5)
    champ = {"suite_score": 0.60, "routing_p50_ms": 2.0}
    assert promote.gate({"suite_score": 0.5}, None, cfg)[0]
    assert not promote.gate({"suite_score": 0.605, "routing_p50_ms": 1.0}, champ, cfg)[0]
    assert promote.gate({"suite_score": 0.62, "routing_p50_ms": 2.9}, champ, cfg)[0]
    ok, why = promote.gate({"suite_score": 0.70, "routing_p50_ms": 3.5}, champ, cfg)
    assert not ok and "p50" in why


def test_gate_reads_each_metric_direction_from_the_registry():
    assert not M.get_metric("ece").higher_is_better  # calibration error: lower is better
    cfg = promote.PromotionConfig(metric="ece", margin=0.01)
    champ = {"ece": 0.08, "routing_p50_ms": 2.0}
    ok, why = promote.gate({"ece": 0.05, "routing_p50_ms": 2.0}, champ, cfg)
    assert ok and "lower is better" in why
    ok, why = promote.gate({"ece": 0.075, "routing_p50_ms": 2.0}, champ, cfg)  # not by the margin
    assert not ok and "margin" in why
    assert not promote.gate({"ece": 0.20, "routing_p50_ms": 2.0}, champ, cfg)[0]  # worse
    # the same numbers under a higher-is-better metric gate the other way round
    hi = promote.PromotionConfig(metric="macro_f1", margin=0.01)
    assert M.get_metric("macro_f1").higher_is_better
    assert promote.gate({"macro_f1": 0.20}, {"macro_f1": 0.08}, hi)[0]
    assert not promote.gate({"macro_f1": 0.05}, {"macro_f1": 0.08}, hi)[0]
    with pytest.raises(KeyError, match="Supported metrics"):
        promote.gate({"x": 1.0}, {"x": 0.0}, promote.PromotionConfig(metric="no_such_metric"))


def test_promotion_on_a_lower_is_better_metric_moves_the_alias(mlflow_store):
    cfg = promote.PromotionConfig(model_name="inferroute-ece", metric="ece", margin=0.01)
    versions = []
    for ece in (0.10, 0.05, 0.045, 0.20):
        v = _register(0.5, 2.0, cfg)
        promote.tag_version(v, {"ece": ece}, cfg)
        versions.append(v)
    assert promote.promote(versions[0], cfg).promote  # no champion yet
    assert promote.promote(versions[1], cfg).promote  # 0.05 < 0.10 - margin: better
    assert not promote.promote(versions[2], cfg).promote  # better, but not by the margin
    assert not promote.promote(versions[3], cfg).promote  # worse
    assert promote.alias_version("champion", cfg) == versions[1]


def test_promote_and_rollback_move_aliases(mlflow_store):
    cfg = promote.PromotionConfig(model_name="inferroute-test", margin=0.01)
    v1 = _register(0.60, 2.0, cfg)
    assert promote.promote(v1, cfg).promote  # no champion yet
    assert promote.alias_version("champion", cfg) == v1

    v2 = _register(0.605, 2.0, cfg)  # better, but not by the margin
    d = promote.promote(v2, cfg)
    assert not d.promote and "margin" in d.reason
    assert promote.alias_version("champion", cfg) == v1

    v3 = _register(0.70, 9.0, cfg)  # better but 4.5x slower
    assert not promote.promote(v3, cfg).promote
    assert promote.alias_version("champion", cfg) == v1

    v4 = _register(0.65, 2.5, cfg)
    assert promote.promote(None, cfg).promote  # latest version by default
    assert promote.alias_version("champion", cfg) == v4
    assert promote.alias_version("previous", cfg) == v1
    loaded = mlflow.pyfunc.load_model(f"models:/{cfg.model_name}@champion")
    assert (
        loaded.metadata.run_id == mlflow.MlflowClient().get_model_version(cfg.model_name, v4).run_id
    )

    assert promote.rollback(cfg) == v1
    assert promote.alias_version("champion", cfg) == v1
    assert promote.alias_version("previous", cfg) is None
    with pytest.raises(promote.PromotionError):
        promote.rollback(cfg)


def test_register_router_round_trip(mlflow_store):
    """A real InferRoute router through inferroute.packaging: register, promote, load @champion."""
    import inferroute
    from inferroute import ModelCard, PriorRouter
    from inferroute.packaging import EXAMPLE_POOL

    cfg = promote.PromotionConfig(model_name="inferroute-rt")
    names = ["a", "b", *EXAMPLE_POOL]
    router = PriorRouter(
        {m: ModelCard(m, 1.0 / (i + 1), 1.0 / (i + 1)) for i, m in enumerate(names)}
    )
    with tracking.run("t-rt", "train", {"kind": "prior"}):
        version = promote.register_router(
            router, {"suite_score": 0.5, "routing_p50_ms": 1.0}, cfg, dataset_version="x"
        )
    assert promote.promote(version, cfg).promote
    loaded = inferroute.load_router(f"models:/{cfg.model_name}@champion")
    msgs = [{"role": "user", "content": "Write a haiku about the sea."}]
    assert loaded.route(msgs, ["a", "b"]).model == router.route(msgs, ["a", "b"]).model
    tags = promote.client().get_model_version(cfg.model_name, version).tags
    assert tags[promote.SCORE_TAG].startswith("0.5") and tags["dataset_version"] == "x"


def test_route_p50_measures_the_router_not_the_machines_load(monkeypatch):
    """The gate's speed check reads routing p50 from two training runs made at different times:
    a burst of other work on the machine during one of them (here: every third call 50 ms slower)
    and the lazy set-up of the first call must not show up as the router being slower."""
    from evals import experiments

    clock = [0.0]
    monkeypatch.setattr(experiments.time, "perf_counter", lambda: clock[0])

    class Router:
        calls = 0

        def route(self, messages, pool):
            Router.calls += 1
            cost = 1.0 if Router.calls == 1 else 0.002  # one-off set-up, then 2 ms a request
            if Router.calls % 3 == 0:
                cost += 0.050  # another process had the CPU
            clock[0] += cost

    p50 = experiments.route_p50(Router(), [f"prompt {i}" for i in range(10)], ["m"], repeat=3)
    assert p50 == pytest.approx(2.0)
    assert Router.calls == 1 + 10 * 3
