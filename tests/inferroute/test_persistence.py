"""Save/load and MLflow round trips route exactly like the in-memory router."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import inferroute
from inferroute import OPTIMIZE_MODES, PriorRouter, UnknownRouterError
from tests.inferroute.conftest import MESSAGES, POOL

# longer than the router's max_chars: its hashed features read the head and tail only
LONG = [{"role": "user", "content": "Summarise this report:\n" + "The quarter went well. " * 400}]


def _decisions(router):
    out = []
    for messages in [*MESSAGES, LONG]:
        for mode in OPTIMIZE_MODES:
            d = router.route(messages, POOL, optimize=mode)
            out.append(
                (
                    d.model,
                    d.task,
                    d.confidence,
                    d.complexity,
                    d.complexity_score,
                    dict(d.candidates),
                    d.router_version,
                    d.trained,
                )
            )
    return out


def test_save_load_round_trip(any_router, tmp_path):
    router = any_router
    router.save(str(tmp_path / "r"))
    loaded = inferroute.load_router(str(tmp_path / "r"))
    assert type(loaded) is type(router)
    assert _decisions(loaded) == _decisions(router)
    clf = getattr(router, "classifier", None)
    if clf is not None:
        assert loaded.classifier.max_chars == clf.max_chars == router.config.max_chars


def test_mlflow_round_trip_through_the_registry(tiny_router, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from inferroute.packaging import log_router

    monkeypatch.chdir(tmp_path)  # artifacts of a server-less sqlite store land under ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run():
            info = log_router(tiny_router, registered_model_name="inferroute")
        MlflowClient().set_registered_model_alias(
            "inferroute", "champion", info.registered_model_version
        )
        loaded = inferroute.load_router("models:/inferroute@champion")
        assert _decisions(loaded) == _decisions(tiny_router)
        # the pyfunc flavour routes too (signature + input example were logged)
        import json

        import pandas as pd

        model = mlflow.pyfunc.load_model("models:/inferroute@champion")
        frame = pd.DataFrame(
            {
                "messages": [json.dumps(MESSAGES[0])],
                "pool": [json.dumps(POOL)],
                "optimize": ["quality"],
                "task": [""],
            }
        )
        row = model.predict(frame).iloc[0]
        assert row["model"] == tiny_router.route(MESSAGES[0], POOL, optimize="quality").model
    finally:
        mlflow.set_tracking_uri(None)


class ConstantRouter(PriorRouter):
    """A kind the package does not know: the prior router with one quality for every model, kept
    in a file of its own."""

    name = "constant-test"

    def __init__(self, cards, config=None, quality: float = 0.5):  # type: ignore[no-untyped-def]
        super().__init__(cards, config)
        self.quality = quality

    def _quality(self, models, cards):  # type: ignore[no-untyped-def]
        return np.full(len(models), self.quality)

    def save_state(self, path: Path) -> dict[str, object]:
        (path / "constant.json").write_text(json.dumps({"quality": self.quality}))
        return {"constant_file": "constant.json"}

    @classmethod
    def from_saved(cls, path, meta, config, book):  # type: ignore[no-untyped-def]
        quality = json.loads((path / meta["constant_file"]).read_text())["quality"]
        return cls(book, config, quality)


def test_a_newly_registered_kind_saves_and_loads_itself(prior_router, tmp_path, monkeypatch):
    from inferroute import registry

    monkeypatch.setattr(registry, "ROUTERS", dict(registry.ROUTERS))
    router = ConstantRouter(prior_router.book, prior_router.config, quality=0.42)
    router.save(tmp_path / "r")
    with pytest.raises(UnknownRouterError, match="'constant-test'.*learned, prior"):
        inferroute.load_router(tmp_path / "r")  # not registered yet: the error names the kinds

    registry.register_router(ConstantRouter)
    loaded = inferroute.load_router(tmp_path / "r")
    assert type(loaded) is ConstantRouter and loaded.quality == 0.42
    assert _decisions(loaded) == _decisions(router)
    assert {c.quality for c in loaded.route(MESSAGES[0], POOL).candidates.values()} == {0.42}
    with pytest.raises(ValueError, match="already registered"):
        registry.register_router(type("Other", (ConstantRouter,), {}))
    with pytest.raises(TypeError, match="not a Router"):
        registry.register_router(dict)  # type: ignore[arg-type]


def test_a_benchmark_quality_classifier_is_used_saved_and_loaded(small_data, tmp_path):
    """lat_task_source 'benchmark': the quality models read a second classifier fitted on the
    benchmark labels only; the routing decision's task still comes from the routing one."""
    from inferroute.config import TINY

    scores, labels, split = small_data
    train = scores[scores["prompt_id"].map(split) == "train"]
    assert labels["dataset"].isin(TINY.real_datasets()).any()  # real prompts are in the labels
    router = inferroute.train(train, labels, TINY.with_overrides(lat_task_source="benchmark"))
    assert router.quality_classifier is not None
    texts = [m[-1]["content"] for m in MESSAGES]
    routing_only = router.with_preferences(None, router.version)
    routing_only.quality_classifier = None
    assert not np.allclose(
        router.predict_quality(texts, POOL), routing_only.predict_quality(texts, POOL)
    )
    assert router.classify(texts) == routing_only.classify(texts)
    router.save(str(tmp_path / "r"))
    loaded = inferroute.load_router(str(tmp_path / "r"))
    assert loaded.quality_classifier is not None
    assert _decisions(loaded) == _decisions(router)
    np.testing.assert_allclose(
        loaded.predict_quality(texts, POOL), router.predict_quality(texts, POOL)
    )


def test_an_unknown_task_source_is_a_config_error(small_data):
    from inferroute.config import TINY

    scores, labels, _ = small_data
    with pytest.raises(inferroute.ConfigError, match="lat_task_source"):
        inferroute.train(scores.head(2000), labels, TINY.with_overrides(lat_task_source="nope"))
