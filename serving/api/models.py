"""/models and /models/{model_id}/health (no auth). Model ids may contain slashes."""

from __future__ import annotations

from typing import Any

from flask import current_app

from serving.api import bp
from serving.api.openapi import doc
from serving.errors import ApiError
from serving.protocol import ModelHealth, ModelInfo, ModelList


@bp.get("/models")
@doc("List the models available for inference", responses={200: ModelList}, auth=False, errors=())
def list_models() -> Any:
    engines = current_app.extensions["engines"]
    data = [
        ModelInfo(
            id=m.id,
            owned_by=m.owned_by,
            context_length=m.context_length,
            pricing={
                "input_micros_per_mtok": m.input_price_micros_per_mtok,
                "output_micros_per_mtok": m.output_price_micros_per_mtok,
            },
        )
        for m in engines.models()
    ]
    router = current_app.extensions.get("router")
    info = router.info() if router is not None and hasattr(router, "info") else None
    return ModelList(data=data, router=info).model_dump()


@bp.get("/models/<path:model_id>/health")
@doc(
    "Whether a model is warm and ready to serve",
    responses={200: ModelHealth},
    auth=False,
    errors=(404,),
)
def model_health(model_id: str) -> Any:
    engines = current_app.extensions["engines"]
    if engines.get(model_id) is None:
        raise ApiError(
            404, f"The model '{model_id}' does not exist.", param="model_id", code="model_not_found"
        )
    return ModelHealth(model=model_id, status=engines.health(model_id)).model_dump()
