"""The Inferbase gateway: a Flask application factory."""

from __future__ import annotations

import atexit
import logging
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask.sessions import SessionInterface

if TYPE_CHECKING:
    from serving.router_client import RouterClient

logger = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from serving import (
        api,
        auth,
        compare,
        config,
        cors,
        db,
        errors,
        front,
        metrics,
        ratelimit,
        upstream,
    )

    app = Flask(__name__, instance_relative_config=False)
    app.session_interface = _NoFlaskSession()
    config.load_config(app, test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    errors.init_app(app)
    db.init_app(app)
    auth.init_app(app)
    ratelimit.init_app(app)
    engines = upstream.build(app)
    app.extensions["engines"] = engines
    if test_config is None or "ENGINES" not in test_config:
        atexit.register(engines.close)
    app.extensions["router"] = _build_router(app)
    compare.init_app(app)
    api.register(app)
    cors.init_app(app)  # off unless CORS_ORIGINS
    metrics.init_app(app)  # Prometheus: the recorder Front and chat use, GET /metrics
    if app.config.get("DASHBOARD", True):  # browser dashboard + live events (serving/dashboard)
        from serving import dashboard

        dashboard.init_app(app)
    # the request id, the log line and error rendering of every route (serving/front.py)
    app.wsgi_app = front.Front(app, app.wsgi_app)  # type: ignore[method-assign]
    config.trust_proxies(app)  # after Front: outermost
    logger.debug("config %s", config.public_config(app))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


class _NoFlaskSession(SessionInterface):
    """Flask's signed-cookie session is never used (API keys, or the JWT cookie of serving.auth),
    yet opening it cost about 0.1 ms of every request (a serializer and a cookie parse): Flask
    gets its null session instead."""

    def open_session(self, app: Flask, request: object) -> None:
        return None

    def save_session(self, app: Flask, session: object, response: object) -> None:
        return None


def _build_router(app: Flask) -> RouterClient | None:
    """The router behind `model: "auto"` (`ROUTER` in a test config: a fake with its `route`)."""
    if "ROUTER" in app.config:
        router: RouterClient | None = app.config["ROUTER"]
        return router
    try:
        from serving.router_client import build_router
    except ImportError:
        return None
    return build_router(app)
