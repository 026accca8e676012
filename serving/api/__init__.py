"""The public API blueprints: `bp` (/api/v1/inference), `auth_bp` (/api/v1/auth) and
`traffic_bp` (/api/v1/traffic)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, request

from serving.errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api/v1/inference")
auth_bp = Blueprint("session", __name__, url_prefix="/api/v1/auth")
traffic_bp = Blueprint("traffic", __name__, url_prefix="/api/v1/traffic")


def json_body() -> dict[str, Any]:
    """The request's JSON object body, or a 400 (`invalid_json`): what every Flask view with a body
    validates (the lean chat view reads its own, `serving.api.chat`)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def register(app: Flask) -> None:
    from serving.api import (  # noqa: F401  (routes register on import)
        account,
        chat,
        keys,
        models,
        openapi,
        session,
        traffic,
    )

    app.register_blueprint(bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(traffic_bp)
    openapi.init_app(app)
