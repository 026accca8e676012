"""Config overrides are type-checked; the registry and the package import stay light."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inferroute.config import RouterConfig
from inferroute.errors import ConfigError, UnknownRouterError
from inferroute.registry import ROUTERS, get_router_class


def test_yaml_defaults_and_overrides():
    cfg = RouterConfig.from_yaml()
    assert cfg.embedder == "static"
    tuned = cfg.with_overrides(policy_balanced_w_cost=0.5, knn_k=10)
    assert tuned.policy_balanced_w_cost == 0.5 and tuned.knn_k == 10
    assert tuned.to_flat_dict()["knn_k"] == 10
    with pytest.raises(ConfigError, match="unknown config key"):
        cfg.with_overrides(knn_kk=3)
    with pytest.raises(ConfigError, match="expects int"):
        cfg.with_overrides(knn_k="3")


def test_registry_lists_names_on_error():
    assert get_router_class("prior") is ROUTERS["prior"]
    with pytest.raises(UnknownRouterError, match="learned, prior"):
        get_router_class("mf")


def test_import_loads_no_heavy_modules():
    code = (
        "import sys, inferroute, inferroute.registry; "
        "heavy = ('torch', 'mlflow', 'flask', 'sentence_transformers'); "
        "bad = [m for m in heavy if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_optimize_modes_have_one_definition_that_the_config_and_policy_follow():
    import dataclasses
    import typing

    from inferroute import OPTIMIZE, OPTIMIZE_MODES, OptimizeMode
    from inferroute.policy import policy_params

    assert typing.get_args(OptimizeMode) == OPTIMIZE_MODES == tuple(OPTIMIZE)
    fields = {f.name for f in dataclasses.fields(RouterConfig)}
    cfg = RouterConfig()
    for name, info in OPTIMIZE.items():
        assert info.name == name and info.label and info.description
        assert set(info.policy_params) <= fields, f"RouterConfig lacks {name}'s policy fields"
        tuned = cfg.with_overrides(**{info.policy_params[1]: 0.123})
        assert policy_params(tuned, name)[1] == 0.123  # the policy reads exactly these fields
