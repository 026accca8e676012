"""The router as an MLflow pyfunc model. The only module that imports mlflow (nothing imports it
but `load_router` for MLflow URIs, lazily).

`log_router(router)` saves the router directory as the artifact `router` of a `RouterModel`, with a
signature and an input example; `load_context` loads the router (the heavy step) once. The serving
process loads `models:/inferroute@champion` with `inferroute.load_router(uri)`, which unwraps the
python model and returns the very Router object, so typed `route()` calls need no DataFrames.

pyfunc `predict` takes a DataFrame with columns `messages` (JSON list of {"role","content"}),
`pool` (JSON list of model ids), `optimize` and `task` (may be empty) and returns one row per input
with the decision's fields (`candidates` as JSON).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
from mlflow.pyfunc.model import PythonModel

from inferroute.errors import InferrouteError
from inferroute.persist import load_router_dir

if TYPE_CHECKING:
    from inferroute.policy import Router

ARTIFACT = "router"
EXAMPLE_POOL = ["GPT-4-1106-preview", "Mixtral-8x7B-Instruct"]


def _input_example() -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "messages": [json.dumps([{"role": "user", "content": "Sort a list in Python"}])],
            "pool": [json.dumps(EXAMPLE_POOL)],
            "optimize": ["balanced"],
            "task": [""],
        }
    )


class RouterModel(PythonModel):
    """pyfunc wrapper: the router is loaded in `load_context`, never in `predict`."""

    def __init__(self, router: Router | None = None) -> None:
        self.router = router

    def load_context(self, context: Any) -> None:
        self.router = load_router_dir(Path(context.artifacts[ARTIFACT]))

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        import pandas as pd

        if self.router is None:
            raise InferrouteError("RouterModel.predict called before load_context")
        rows = []
        for rec in model_input.to_dict("records"):
            decision = self.router.route(
                json.loads(rec["messages"]),
                json.loads(rec["pool"]),
                optimize=rec.get("optimize") or "balanced",
                task=rec.get("task") or None,
            )
            row = asdict(decision)
            row["candidates"] = json.dumps(row["candidates"])
            row["extra"] = json.dumps(row["extra"], default=str)
            rows.append(row)
        return pd.DataFrame(rows)


def log_router(
    router: Router, name: str = "router", registered_model_name: str | None = None
) -> Any:
    """Log the router in the active MLflow run (starts one if none); returns the ModelInfo."""
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ARTIFACT
        router.save(str(path))
        example = _input_example()
        signature = infer_signature(example, RouterModel(router).predict(None, example))
        code_root = Path(__file__).resolve().parent
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=RouterModel(),
            artifacts={ARTIFACT: str(path)},
            code_paths=[str(code_root)],
            signature=signature,
            input_example=example,
            registered_model_name=registered_model_name,
        )


def load_mlflow_router(uri: str) -> Router:
    model = mlflow.pyfunc.load_model(uri)
    router: Router = model.unwrap_python_model().router
    return router
