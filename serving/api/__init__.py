"""The public API blueprints: `bp` (/api/v1/inference) and `auth_bp` (/api/v1/auth)."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("api", __name__, url_prefix="/api/v1/inference")
auth_bp = Blueprint("session", __name__, url_prefix="/api/v1/auth")


def register(app: Flask) -> None:
    from serving.api import (  # noqa: F401  (routes register on import)
        account,
        chat,
        keys,
        models,
        openapi,
        session,
    )

    app.register_blueprint(bp)
    app.register_blueprint(auth_bp)
    openapi.init_app(app)
