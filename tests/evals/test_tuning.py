"""Optuna: the objective with a FixedTrial, and a two-trial study logged as nested MLflow runs."""

from __future__ import annotations

import mlflow
import optuna
import pytest

from evals import traffic, tuning
from evals.harness import BenchmarkSpec

SPECS = [BenchmarkSpec("routerbench", ("routerbench_zs",), "multi", eval_split="test")]


@pytest.fixture
def ctx(rb_slice):
    return tuning.TuneContext(
        target="knn",
        df=rb_slice,
        train_df=rb_slice[rb_slice["split"] == "train"],
        specs=SPECS,
    )


def test_objective_with_fixed_trial_is_deterministic(ctx):
    a = tuning.objective(optuna.trial.FixedTrial({"k": 10}), ctx)
    b = tuning.objective(optuna.trial.FixedTrial({"k": 10}), ctx)
    c = tuning.objective(optuna.trial.FixedTrial({"k": 150}), ctx)
    assert 0 < a < 1 and a == b
    assert a != c  # the hyperparameter reaches the model


def test_two_trial_study_logs_nested_runs(ctx, mlflow_store):
    study = tuning.tune(ctx, n_trials=2, study_name="tune-test", storage=None)
    assert len(study.trials) == 2
    assert study.best_value == max(t.value for t in study.trials)
    runs = mlflow.search_runs(experiment_names=["tune-test"], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all("suite_score" in c.data.metrics and "k" in c.data.params for c in children)
    assert parents[0].data.metrics["best_value"] == pytest.approx(study.best_value)


def test_persistent_storage_resumes(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    s1 = tuning.make_study("resume", storage)
    s1.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    s2 = tuning.make_study("resume", storage)
    assert len(s2.trials) == 1


def test_policy_objective_returns_quality_and_cost(rb_slice):
    from inferroute import ModelCard, PriorRouter

    models = sorted(rb_slice["model"].unique())
    cards = {m: ModelCard(m, 0.5 + i, 1.0 + i) for i, m in enumerate(models)}
    spec = BenchmarkSpec("routerbench", ("routerbench_zs",), "multi", eval_split="test")
    ctx = tuning.TuneContext("policy:cost", rb_slice, rb_slice, [spec], log_mlflow=False)
    cheap = {"policy_cost_w_quality": 0.0, "policy_cost_epsilon": 0.5}
    rich = {"policy_cost_w_quality": 1.0, "policy_cost_epsilon": 0.0}
    router = PriorRouter(cards)
    q0, c0 = tuning.policy_objective(optuna.trial.FixedTrial(cheap), ctx, "cost", router, spec)
    q1, c1 = tuning.policy_objective(optuna.trial.FixedTrial(rich), ctx, "cost", router, spec)
    assert 0 <= q0 <= 1 and c0 > 0
    assert c0 <= c1  # caring only about cost never costs more
    assert router.config.policy_cost_epsilon != 0.5 or router.config.policy_cost_w_quality != 0.0


def test_policy_trials_that_break_the_mode_orders_are_infeasible(rb_slice):
    from inferroute import ModelCard, PriorRouter
    from inferroute.config import RouterConfig

    pool = ("Mixtral-8x7B-Instruct", "GPT-4-1106-preview")
    cards = {m: ModelCard(m, 1.0, 1.0, quality_prior=0.5) for m in rb_slice["model"].unique()}
    cards[pool[0]] = ModelCard(pool[0], 0.6, 0.6, ttft_ms=300, tpot_ms=12, quality_prior=0.7)
    cards[pool[1]] = ModelCard(pool[1], 10.0, 30.0, ttft_ms=600, tpot_ms=30, quality_prior=0.9)
    spec = BenchmarkSpec("routerbench", ("routerbench_zs",), "multi", eval_split="test")
    prompts = ["Hi!", "Prove that there are infinitely many primes.", "Translate 'cat' to French."]
    ctx = tuning.TuneContext(
        "policy:cost", rb_slice, rb_slice, [spec], log_mlflow=False, order_prompts=prompts,
        order_pools=[traffic.Pool("pair", pool)],
    )  # fmt: skip
    router = PriorRouter(cards, RouterConfig())
    default = {"policy_cost_w_quality": 0.2, "policy_cost_epsilon": 0.3}
    trial = optuna.trial.FixedTrial(default)
    tuning.policy_objective(trial, ctx, "cost", router, spec)
    assert trial.user_attrs["constraint"] == [0.0]
    # cost mode caring only about quality, with no slack: it buys GPT-4 while balanced does not
    broken = optuna.trial.FixedTrial({"policy_cost_w_quality": 1.0, "policy_cost_epsilon": 0.0})
    tuning.policy_objective(broken, ctx, "cost", router, spec)
    assert broken.user_attrs["constraint"][0] > 0
    assert any("spend cost" in p for p in broken.user_attrs["order_problems"])


def test_constrained_study_keeps_only_trials_that_keep_the_orders():
    study = tuning.make_study("constrained", None, ("maximize", "minimize"), constrained=True)

    def objective(t: optuna.Trial) -> tuple[float, float]:
        x = t.suggest_float("x", 0, 1)
        t.set_user_attr("constraint", [1.0 if x > 0.5 else 0.0])
        return x, x

    study.optimize(objective, n_trials=8)
    kept = tuning.pareto_front(study)
    assert all(t.params["x"] <= 0.5 for t in kept)


def test_router_space_names_only_router_config_keys():
    from inferroute.config import RouterConfig

    params = tuning.SPACES["router"](_Sampler())
    RouterConfig().with_overrides(**params)  # raises ConfigError on an unknown or mistyped key


class _Sampler:
    """A stand-in trial that returns the low end of every range."""

    def suggest_int(self, name, low, high, log=False):
        return low

    def suggest_float(self, name, low, high, log=False):
        return float(low)
