"""OpenAPI 3.1, generated from the routes and the pydantic models they validate with.

Each view declares itself with `@doc(...)` (no per-request cost); `build_spec(app)` walks the URL
map and lets pydantic write the JSON Schemas (2020-12, which OpenAPI 3.1 uses as is).

The document is as tight as the server (`serving.testing.fuzz` holds it to that: what it allows is
accepted, what it forbids is refused): model ids are the catalog's (`_catalog`), a chat request
declares OpenAI's pass-through parameters and no others (the catalog's per-model `engine_params`
are listed under `x-engine-params`), and `links` chain the operations (a created key to its update
and revocation, a page to the next) for stateful clients and fuzzers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serving.engines.fields import OPENAI_PARAMS
from serving.protocol import ErrorResponse, RoutingFrame

F = TypeVar("F", bound=Callable[..., Any])
REF = "#/components/schemas/{model}"
ERRORS = {
    400: "Invalid request",
    401: "Invalid or missing API key",
    402: "Insufficient credits",
    403: "API key revoked or account deactivated",
    404: "Not found",
    409: "Conflict: the resource's state refuses the change",
    413: "Request body too large",
    429: "Rate limited (Retry-After header: seconds)",
    502: "Backend error",
    503: "Busy: retry after the Retry-After header's seconds",
}


def doc(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel] | None] | None = None,
    auth: bool = True,
    stream: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (400, 401, 403, 429),
    links: dict[str, dict[str, Any]] | None = None,
) -> Callable[[F], F]:
    """Describe a view. `links`: OpenAPI links of its success answer, by name:
    `{"operationId": ..., "parameters": {...}}` (runtime expressions such as `$response.body#/id`).
    """

    def mark(view: F) -> F:
        view._openapi = {  # type: ignore[attr-defined]
            "summary": summary,
            "body": body,
            "query": query,
            "responses": responses or {},
            "auth": auth,
            "stream": stream,
            "errors": errors,
            "links": links or {},
        }
        return view

    return mark


def operation_id(method: str, path: str) -> str:
    """`get__api_v1_inference_keys` for GET /api/v1/inference/keys: what `links` name."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", f"{method.lower()}_{path}").strip("_")


def link(method: str, path: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to the operation `method path` (a path under /api/v1/inference when it
    does not start with /api), its parameters given by runtime expressions."""
    full = path if path.startswith("/api/") else f"/api/v1/inference{path}"
    return {"operationId": operation_id(method, full), "parameters": parameters}


def _sse_event(frame: dict[str, Any], ref: Callable[[type[BaseModel]], Any]) -> dict[str, Any]:
    """One server-sent event of a stream (OpenAPI 3.1 describes each event with `schema`): its
    `data` is a JSON frame (a chunk; the routing decision first when routed; an error frame if the
    stream fails) or, last, the literal `[DONE]`."""
    frames = {"anyOf": [frame, ref(RoutingFrame), ref(ErrorResponse)]}
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": frames,
                    },
                ]
            }
        },
    }


def _models(meta: list[dict[str, Any]]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [ErrorResponse, RoutingFrame]
    for m in meta:
        for model in [m["body"], m["query"], m["stream"], *m["responses"].values()]:
            if model is not None and model not in found:
                found.append(model)
    return found


def build_spec(app: Flask) -> dict[str, Any]:
    ops: list[tuple[str, str, dict[str, Any]]] = []
    for rule in app.url_map.iter_rules():
        meta = getattr(app.view_functions[rule.endpoint], "_openapi", None)
        if meta is None:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            ops.append((path, method.lower(), meta))
    models = _models([m for _, _, m in ops])
    mapping, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas = defs.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return mapping[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for path, method, meta in ops:
        op: dict[str, Any] = {"summary": meta["summary"], "operationId": operation_id(method, path)}
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"{([^}]+)}", path)
        ]
        if meta["query"] is not None:
            qschema = meta["query"].model_json_schema(ref_template=REF)
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": False, "schema": prop})
        if params:
            op["parameters"] = params
        if meta["body"] is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(meta["body"])}},
            }
        responses: dict[str, Any] = {}
        for status, model in meta["responses"].items():
            content: dict[str, Any] = {}
            if model is not None:
                content["application/json"] = {"schema": ref(model)}
            if meta["stream"] is not None and status == 200:
                content["text/event-stream"] = {"schema": _sse_event(ref(meta["stream"]), ref)}
            responses[str(status)] = {
                "description": "OK",
                **({"content": content} if content else {}),
                **({"links": meta["links"]} if meta["links"] and status < 300 else {}),
            }
        for status in meta["errors"]:
            responses[str(status)] = {
                "description": ERRORS.get(status, "Error"),
                "content": {"application/json": {"schema": ref(ErrorResponse)}},
            }
        if meta["auth"]:
            op["security"] = [{"apiKey": []}, {"session": []}]
        else:
            op["security"] = []
        op["responses"] = responses
        paths.setdefault(path, {})[method] = op
    _catalog(app, schemas, paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Inferbase Inference API",
            "version": "1.0.0",
            "description": (
                "OpenAI-compatible inference API with InferRoute smart routing. Every error, "
                "the HTTP server's own included (431 request headers too large, 400 request line "
                "too large or malformed), is an ErrorResponse: "
                '{"error": {"message", "type", "param", "code"}}.'
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "inf_... API key"},
                "session": {"type": "apiKey", "in": "cookie", "name": "inferbase_session"},
            },
        },
    }


def _catalog(app: Flask, schemas: dict[str, Any], paths: dict[str, Any]) -> None:
    """Fill in what only the running app knows: the catalog's model ids (a model outside it is a
    404 `model_not_found` for `model` and path ids, a 400 in a key's or a routing pool) and which
    parameters beyond OpenAI's each model's catalog entry lets through (`engine_params`)."""
    models = app.extensions["engines"].models()
    ids = [m.id for m in models]
    chat = schemas["ChatCompletionRequest"]
    props = chat["properties"]
    props["model"] = {**props["model"], "enum": [*ids, "auto"]}
    for name in sorted(OPENAI_PARAMS):
        props[name] = {"description": "OpenAI parameter, passed to the engine as sent"}
    # A catalog's `engine_params` are accepted only with the models that list them: a condition
    # on `model` that JSON Schema could state (`dependentSchemas`) but that schema-driven clients
    # and generators mishandle (schemathesis 4.32 then drew invalid values for other fields).
    # They stay outside `properties`, listed per model under this extension.
    chat["x-engine-params"] = {m.id: sorted(m.engine_params) for m in models if m.engine_params}
    chat["additionalProperties"] = False
    pool = {"type": "array", "items": {"type": "string", "enum": ids}}
    for model, nullable in (("KeyCreate", False), ("KeyUpdate", True), ("RoutingOptions", True)):
        prop = schemas[model]["properties"]["model_pool"]
        kept = {k: v for k, v in prop.items() if k in ("title", "description", "default")}
        bounds = {k: v for k, v in prop.items() if k in ("minItems", "maxItems")}
        for branch in prop.get("anyOf", []):
            bounds |= {k: v for k, v in branch.items() if k in ("minItems", "maxItems")}
        typed = {**pool, **bounds}
        schemas[model]["properties"]["model_pool"] = {
            **kept,
            **({"anyOf": [typed, {"type": "null"}]} if nullable else typed),
        }
    for ops in paths.values():
        for op in ops.values():
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] == "model_id":
                    param["schema"] = {"type": "string", "enum": ids}


def spec_view() -> Any:
    spec = current_app.extensions.get("openapi")
    if spec is None:
        spec = current_app.extensions["openapi"] = build_spec(current_app)
    return spec


def init_app(app: Flask) -> None:
    app.add_url_rule("/openapi.json", "openapi", spec_view)
    app.add_url_rule("/api/v1/inference/openapi.json", "openapi_inference", spec_view)
