"""/models, /models/{model_id} and /models/{model_id}/health (no auth). Model ids may contain
slashes. Also the OpenAI endpoints this gateway does not serve (`/completions`, `/responses`): a 404
that names `/chat/completions`."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from serving.api import bp
from serving.api.openapi import doc, link
from serving.engines.base import CatalogModel
from serving.errors import ApiError
from serving.protocol import ModelHealth, ModelInfo, ModelList


def _info(m: CatalogModel) -> ModelInfo:
    return ModelInfo(
        id=m.id,
        owned_by=m.owned_by,
        context_length=m.context_length,
        pricing={
            "input_micros_per_mtok": m.input_price_micros_per_mtok,
            "output_micros_per_mtok": m.output_price_micros_per_mtok,
        },
    )


def _model(model_id: str) -> CatalogModel:
    model: CatalogModel | None = current_app.extensions["engines"].get(model_id)
    if model is None:
        raise ApiError(
            404, f"The model '{model_id}' does not exist.", param="model_id", code="model_not_found"
        )
    return model


@bp.get("/models")
@doc(
    "List the models available for inference",
    responses={200: ModelList},
    auth=False,
    errors=(),
    links={
        "GetModel": link("get", "/models/{model_id}", model_id="$response.body#/data/0/id"),
        "ModelHealth": link(
            "get", "/models/{model_id}/health", model_id="$response.body#/data/0/id"
        ),
    },
)
def list_models() -> Any:
    engines = current_app.extensions["engines"]
    data = [_info(m) for m in engines.models()]
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
    _model(model_id)
    status = current_app.extensions["engines"].health(model_id)
    return ModelHealth(model=model_id, status=status).model_dump()


@bp.get("/models/<path:model_id>")
@doc(
    "One model (the OpenAI SDK's models.retrieve)",
    responses={200: ModelInfo},
    auth=False,
    errors=(404,),
)
def retrieve_model(model_id: str) -> Any:
    return _info(_model(model_id)).model_dump()


@bp.post("/completions")
@bp.post("/responses")
@doc(
    "Not served: this gateway answers /chat/completions only (a 404 that says so)",
    responses={},
    auth=False,
    errors=(404,),
)
def not_served() -> Any:
    endpoint = request.path.rsplit("/", 1)[-1]
    raise ApiError(
        404,
        f"The /{endpoint} endpoint is not served by this gateway; "
        "use POST /api/v1/inference/chat/completions.",
        code="unsupported_endpoint",
    )
