"""Cross-origin access for browser apps (flask-cors), off unless `CORS_ORIGINS` lists origins.

Only the inference API (`/api/v1/inference/*`) is opened, to those origins, with API keys
(`Authorization`) and without credentials: the session cookie never crosses origins, so the
dashboard's cookie-and-CSRF model is unchanged. A browser app must therefore call with an API key,
ideally a key with a small pool and low limits made for it. flask-cors answers the preflight and
decorates every Flask response; the lean chat route (answered by `serving.front.Front` without
Flask's dispatch) gets the same headers from `lean_headers`.
"""

from __future__ import annotations

import logging

from flask import Flask
from flask_cors import CORS

logger = logging.getLogger(__name__)

EXPOSED = [
    "X-Request-Id",
    "X-Client-Request-Id",
    "Retry-After",
    "X-Inferbase-Model",
    "X-Inferbase-Task",
    "X-Inferbase-Complexity",
    "X-Inferbase-Confidence",
    "X-Inferbase-Optimize",
    "X-Inferbase-Routing-Time-Ms",
    "X-Inferbase-Router-Version",
    "X-Inferbase-Fallback-From",
]


def init_app(app: Flask) -> None:
    origins = app.config.get("CORS_ORIGINS") or []
    if isinstance(origins, str):
        origins = [o.strip() for o in origins.split(",") if o.strip()]
    if not origins:
        return
    CORS(
        app,
        resources={r"/api/v1/inference/*": {"origins": list(origins)}},
        allow_headers=["Authorization", "Content-Type", "X-Request-Id", "X-Client-Request-Id"],
        expose_headers=EXPOSED,
        supports_credentials=False,
        max_age=600,
    )
    app.extensions["cors_origins"] = frozenset(origins)
    logger.info("CORS open to %s", ", ".join(origins))


def lean_headers(app: Flask, origin: str) -> list[tuple[str, str]]:
    """CORS headers for a lean route's answer (what flask-cors adds to the Flask routes)."""
    allowed: frozenset[str] = app.extensions.get("cors_origins", frozenset())
    if not origin or origin not in allowed:
        return []
    return [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Expose-Headers", ", ".join(EXPOSED)),
        ("Vary", "Origin"),
    ]
