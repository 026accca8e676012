from __future__ import annotations

import pytest
import yaml

from serving.engines.catalog import CatalogError, load_catalog, parse_catalog
from serving.engines.local import REPO_ROOT


def test_production_catalog_lists_the_qwen3_models():
    models = {m.id: m for m in load_catalog(REPO_ROOT / "data" / "catalog.yaml")}
    assert set(models) == {"Qwen/Qwen3-14B", "Qwen/Qwen3-32B"}
    m = models["Qwen/Qwen3-14B"]
    assert (m.input_price_micros_per_mtok, m.output_price_micros_per_mtok) == (100_000, 240_000)
    assert m.context_length == 40960 and len(m.replicas) == 2 and m.launch is None
    assert m.routing["quality_proxy"] and 0 < m.routing["quality_prior"] <= 1


def test_engine_params_and_fields_from_the_catalog():
    (m,) = parse_catalog(entry(engine_params=["top_k", "min_p"], engine_fields=["token_ids"]))
    assert m.engine_params == {"top_k", "min_p"} and m.engine_fields == {"token_ids"}
    (m,) = parse_catalog(entry())
    assert m.engine_params == frozenset() and m.engine_fields == frozenset()
    qwen = load_catalog(REPO_ROOT / "data" / "catalog.yaml")[0]
    assert {"top_k", "min_p"} <= qwen.engine_params  # Qwen3's recommended sampling settings


def test_local_catalog_derives_replicas_from_launch_ports(monkeypatch):
    monkeypatch.setenv("INFERBASE_ENGINE_PORT_BASE", "18150")
    models = {m.id: m for m in load_catalog(REPO_ROOT / "data" / "catalog.local.yaml")}
    assert set(models) == {"local/tiny-a", "local/tiny-b"}
    assert models["local/tiny-a"].replicas == ("http://127.0.0.1:18150",)
    assert models["local/tiny-b"].replicas == ("http://127.0.0.1:18151",)
    assert all(m.input_price_micros_per_mtok > 0 for m in models.values())
    assert models["local/tiny-a"].served_name == "local/tiny-a"


def entry(**kw):
    base = {"id": "x/y", "context_length": 100, "price_usd_per_mtok": {"input": 1, "output": 2},
            "replicas": ["http://h:1"]}  # fmt: skip
    base.update(kw)
    return {"models": [base]}


@pytest.mark.parametrize(
    "data,needle",
    [
        (entry(context_length=0), "models.0.context_length"),
        (entry(replicas=[]), "needs `replicas`"),
        (entry(launch={"model": "d"}), "either `replicas` or `launch`"),
        (entry(replicas=["h:1"]), "must start with http"),
        (entry(price_usd_per_mtok={"input": 1}), "price_usd_per_mtok.output"),
        (entry(price_usd_per_mtok={"input": "0.0000001", "output": 1}), "finer than one micro"),
        (entry(colour="red"), "models.0.colour"),
        ({"models": entry()["models"] * 2}, "duplicate model id"),
        ({"models": []}, "models"),
        (entry(engine_params=["top_k", "routing"]), "['routing'] are not engine parameters"),
        (entry(engine_fields=["token_id"]), "unknown engine fields ['token_id']"),
    ],
)
def test_invalid_catalogs_say_what_is_wrong(data, needle):
    with pytest.raises(CatalogError, match="invalid catalog|finer") as e:
        parse_catalog(data, "t.yaml")
    assert needle in str(e.value)


def test_file_errors(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(entry()))
    assert load_catalog(ok)[0].input_price_micros_per_mtok == 1_000_000
