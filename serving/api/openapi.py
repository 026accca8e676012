"""OpenAPI 3.1, generated from the routes and the pydantic models they validate with.

Each view declares itself with `@doc(...)` (no per-request cost); `build_spec(app)` walks the URL
map and lets pydantic write the JSON Schemas (2020-12, which OpenAPI 3.1 uses as is).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serving.protocol import ErrorResponse

F = TypeVar("F", bound=Callable[..., Any])
REF = "#/components/schemas/{model}"
ERRORS = {
    400: "Invalid request",
    401: "Invalid or missing API key",
    402: "Insufficient credits",
    403: "API key revoked or account deactivated",
    404: "Not found",
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
) -> Callable[[F], F]:
    def mark(view: F) -> F:
        view._openapi = {  # type: ignore[attr-defined]
            "summary": summary,
            "body": body,
            "query": query,
            "responses": responses or {},
            "auth": auth,
            "stream": stream,
            "errors": errors,
        }
        return view

    return mark


def _models(meta: list[dict[str, Any]]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [ErrorResponse]
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
        op: dict[str, Any] = {"summary": meta["summary"], "operationId": f"{method}_{path}"}
        op["operationId"] = re.sub(r"[^A-Za-z0-9_]+", "_", op["operationId"]).strip("_")
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
                content["text/event-stream"] = {
                    "schema": {"type": "string", "description": "data: frames, then data: [DONE]"},
                    "x-sse-frame": ref(meta["stream"]),
                }
            responses[str(status)] = {
                "description": "OK",
                **({"content": content} if content else {}),
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


def spec_view() -> Any:
    spec = current_app.extensions.get("openapi")
    if spec is None:
        spec = current_app.extensions["openapi"] = build_spec(current_app)
    return spec


def init_app(app: Flask) -> None:
    app.add_url_rule("/openapi.json", "openapi", spec_view)
    app.add_url_rule("/api/v1/inference/openapi.json", "openapi_inference", spec_view)
