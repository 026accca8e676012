"""evals.notebook.router (cache key, search space) and evals.notebook.tracking_views (read views)."""

from __future__ import annotations

import optuna
import pandas as pd

from evals.notebook import router as R
from evals.notebook import tracking_views as T
from evals import tracking
from evals.suite import SuiteConfig


def _data(versions):
    cfg = SuiteConfig.load(max_train_prompts_per_dataset=10)
    return R.SuiteData(cfg, pd.DataFrame(), versions, pd.DataFrame(), pd.DataFrame())


def test_router_key_changes_with_what_decides_the_router():
    a = _data({"x": "v1"})
    assert R.router_key(a, {"knn_k": 5}) == R.router_key(_data({"x": "v1"}), {"knn_k": 5})
    assert R.router_key(a, {"knn_k": 5}) != R.router_key(a, {"knn_k": 6})
    assert R.router_key(a, None) != R.router_key(_data({"x": "v2"}), None)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("INFERBASE_NB_HOME", str(tmp_path))
    assert R.cache_dir() == tmp_path / "routers"


def test_best_params_and_links(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("INFERBASE_ARTIFACT_ROOT", str(tmp_path / "art"))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert T.best_params(storage, "nope") == {}
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.optimize(lambda t: -((t.suggest_float("x", -1, 1) - 0.3) ** 2), n_trials=5)
    assert T.best_params(storage, "s") == study.best_params
    with tracking.run("exp-a", "r", {"a": 1}):
        pass
    links = T.mlflow_links(["exp-a", "missing"])
    assert list(links["experiment"]) == ["exp-a"] and links.loc[0, "runs"] == 1
    assert links.loc[0, "url"].endswith(f"/#/experiments/{links.loc[0, 'id']}")
    assert T.registry_table("no-such-model").empty


def test_router_space_names_router_config_keys():
    from evals import our_router

    params = R.router_space(optuna.trial.FixedTrial(
        {"knn_k": 30, "knn_power": 2.0, "knn_kappa": 0.1, "prior_shrink": 5.0,
         "lat_hidden": 32, "lat_epochs": 10, "lat_lr": 0.003, "lat_weight_decay": 1e-4,
         "lat_weight_power": 0.5, "quality_blend": 0.7, "clf_c": 2.0}
    ))  # fmt: skip
    cfg = our_router.router_config(params)
    assert (cfg.knn_k, cfg.knn_power, cfg.prior_shrink) == (30, 2.0, 5.0)
    assert (cfg.lat_hidden, cfg.quality_blend, cfg.clf_c) == (32, 0.7, 2.0)


def test_router_space_works_when_installed_as_the_router_space(monkeypatch):
    """Notebook 4 sets `tuning.SPACES["router"] = router_space`: it must not call itself."""
    from evals import tuning

    monkeypatch.setitem(tuning.SPACES, "router", R.router_space)
    trial = optuna.trial.FixedTrial(
        {"knn_k": 30, "knn_power": 2.0, "knn_kappa": 0.1, "prior_shrink": 5.0,
         "lat_hidden": 32, "lat_epochs": 10, "lat_lr": 0.003, "lat_weight_decay": 1e-4,
         "lat_weight_power": 0.5, "quality_blend": 0.7, "clf_c": 2.0}
    )  # fmt: skip
    params = tuning.SPACES["router"](trial)
    assert params["knn_k"] == 30 and params["lat_hidden"] == 32


def test_fresh_registered_model_deletes_only_the_demo_model(tmp_path, monkeypatch):
    import mlflow

    from evals import promote

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("INFERBASE_ARTIFACT_ROOT", str(tmp_path / "art"))
    c = promote.client()
    for name in (R.TRAFFIC_DEMO_MODEL, "inferroute"):
        c.create_registered_model(name)
        with mlflow.start_run() as run:
            mlflow.log_param("x", 1)
        mv = c.create_model_version(name, f"runs:/{run.info.run_id}/m", run_id=run.info.run_id)
        c.set_registered_model_alias(name, "champion", mv.version)
    assert R.fresh_registered_model(R.TRAFFIC_DEMO_MODEL) is True
    names = {m.name for m in c.search_registered_models()}
    assert names == {"inferroute"}  # the served model and its champion are untouched
    assert str(c.get_model_version_by_alias("inferroute", "champion").version) == "1"
    assert R.fresh_registered_model(R.TRAFFIC_DEMO_MODEL) is False  # nothing to delete: no error
