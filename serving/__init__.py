"""The Inferbase gateway: a Flask application factory."""

from __future__ import annotations

import atexit
import logging
import time
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from flask.sessions import SessionInterface

if TYPE_CHECKING:
    from serving.router_client import RouterClient

logger = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from serving import api, auth, config, db, errors, ratelimit, upstream

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
    api.register(app)
    if app.config.get("DASHBOARD", True):  # browser dashboard + live events (serving/dashboard)
        from serving import dashboard

        dashboard.init_app(app)
    _request_hooks(app)
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


def _request_hooks(app: Flask) -> None:
    from serving.api.fast import FastChat
    from serving.incoming import log_response, request_id

    app.wsgi_app = FastChat(app, app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def _start() -> None:
        g.t0 = time.perf_counter()
        g.request_id = request_id(request.environ.get("HTTP_X_REQUEST_ID", ""))

    @app.after_request
    def _finish(rv: Response) -> Response:
        rv.headers["X-Request-Id"] = g.get("request_id", "")
        log_response(
            request.method,
            request.path,
            rv.status_code,
            g.get("request_id", ""),
            g.get("principal"),
            g.get("t0", time.perf_counter()),
        )
        return rv
