"""Every error the gateway returns, rendered one way: ``{"error": {message, type, param, code}}``.

`to_api_error()` maps ApiError, EngineError, pydantic ValidationError, every werkzeug HTTPException
and anything unexpected (500, logged) onto an `ApiError`, whose `body()` is what the client reads.
`serving.front` sends it for lean routes; Flask's error handler (`init_app()`) for the others.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from serving.engines.base import EngineError

logger = logging.getLogger(__name__)

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_credits",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "upstream_error",
}


class ApiError(Exception):
    """An error to show the client. Raise it anywhere in a request."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or TYPES.get(status, "api_error")
        self.param = param
        self.code = code
        self.headers = headers or {}

    def payload(self) -> dict[str, Any]:
        return error_payload(self.message, self.type, self.param, self.code)

    def body(self) -> bytes:
        return orjson.dumps(self.payload())


def error_payload(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def from_engine_error(e: EngineError) -> ApiError:
    headers = {"Retry-After": str(e.retry_after)} if e.retry_after else None
    return ApiError(e.status, e.message, type=e.type, param=e.param, code=e.code, headers=headers)


def from_validation_error(e: ValidationError) -> ApiError:
    err = e.errors(include_url=False)[0]
    param = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__") or None
    missing = err.get("type") == "missing"
    message = f"Missing required parameter: '{param}'." if missing else f"{param}: {err['msg']}"
    code = "missing_required_parameter" if missing else "invalid_value"
    return ApiError(400, message, param=param, code=code)


def db_unavailable(e: BaseException) -> bool:
    """Whether `e` says the database cannot be reached now (a PostgreSQL server restarting or
    gone, a connection it dropped): SQLAlchemy's OperationalError, or psycopg's own from the raw
    cursors of `serving.fastsql`."""
    if isinstance(e, sa_exc.OperationalError):
        return True
    kind = type(e)
    return kind.__module__.startswith("psycopg") and any(
        c.__name__ == "OperationalError" for c in kind.__mro__
    )


def to_api_error(e: BaseException) -> ApiError:
    """Any exception raised while answering a request, as the error the client sees."""
    if isinstance(e, ApiError):
        return e
    if db_unavailable(e):
        logger.error("database unavailable: %s", str(e).splitlines()[0] if str(e) else type(e))
        return ApiError(
            503,
            "The gateway's database is unavailable. Retry shortly.",
            type="api_error",
            code="database_unavailable",
            headers={"Retry-After": "1"},
        )
    if isinstance(e, EngineError):
        logger.warning("engine error: %s (%s)", e.message, e.status)
        return from_engine_error(e)
    if isinstance(e, ValidationError):
        return from_validation_error(e)
    if isinstance(e, HTTPException):
        status = e.code or 500
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(status)
        return ApiError(status, e.description or e.name, code=code)
    logger.error("unhandled error", exc_info=e)
    return ApiError(500, "Internal server error.", type="api_error", code="internal_error")


def init_app(app: Flask) -> None:
    @app.errorhandler(Exception)
    def _any(e: Exception) -> Response:
        err = to_api_error(e)
        rv = app.response_class(err.body(), status=err.status, mimetype="application/json")
        rv.headers.update(err.headers)
        if isinstance(e, HTTPException) and e.code == 405:
            allow = e.get_response().headers.get("Allow")
            if allow:
                rv.headers["Allow"] = allow
        return rv
