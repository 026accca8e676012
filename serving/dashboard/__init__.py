"""The browser dashboard: server-rendered page shells whose small scripts call the JSON API.

Pages (all under /dashboard): login, keys, credits, usage, models, playground, compare. Each page
needs a session cookie (`POST /api/v1/auth/login`); without one the browser goes to the login page.
Everything the pages show or change goes through the public API with that cookie and its CSRF
token, so the dashboard holds no business logic of its own. Live updates come over the WebSocket
in `events.py`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, Flask, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from serving import auth, bell, db
from serving.errors import ApiError
from serving.router_client import OPTIMIZE
from serving.schema import accounts

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

PAGES = {
    "keys": "API keys",
    "usage": "Usage",
    "credits": "Credits",
    "models": "Models",
    "playground": "Playground",
    "compare": "Compare",
}


@bp.context_processor
def _optimize_modes() -> dict[str, Any]:
    """The optimize modes the forms offer: InferRoute's own list (`inferroute.OPTIMIZE`)."""
    return {"optimize_modes": list(OPTIMIZE.values())}


def _signed_in() -> tuple[int, str] | None:
    if not request.cookies.get(auth.SESSION_COOKIE):
        return None
    try:
        principal = auth.authenticate()
    except ApiError:
        return None
    with db.read() as conn:
        email = conn.execute(
            sa.select(accounts.c.email).where(accounts.c.id == principal.account_id)
        ).scalar_one()
    return principal.account_id, str(email)


def _safe_next(target: str | None) -> str:
    parts = urlsplit(target or "")
    if target and not parts.scheme and not parts.netloc and target.startswith("/dashboard/"):
        return target
    return url_for("dashboard.page", name="keys")


@bp.after_request
def _no_store(rv: Response) -> Response:
    rv.headers["X-Content-Type-Options"] = "nosniff"  # pages, scripts, styles and JSON errors
    rv.headers["Referrer-Policy"] = "same-origin"
    if rv.mimetype == "text/html":
        rv.headers["Cache-Control"] = "no-store"
        rv.headers["X-Frame-Options"] = "DENY"
        rv.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self' ws: wss:; frame-ancestors 'none'"
        )
    return rv


@bp.get("/")
def index() -> Response:
    return redirect(url_for("dashboard.page", name="keys"))


@bp.get("/login")
def login() -> Any:
    nxt = _safe_next(request.args.get("next"))
    if _signed_in():
        return redirect(nxt)
    return render_template("dashboard/login.html", next=nxt, pages=PAGES, page="login", email=None)


@bp.get("/<name>")
def page(name: str) -> Any:
    if name not in PAGES:
        raise ApiError(404, f"No dashboard page '{name}'.")
    who = _signed_in()
    if who is None:
        return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
    return render_template(f"dashboard/{name}.html", pages=PAGES, page=name, email=who[1])


def root() -> Response:
    """`/` leads a person to the dashboard (the API lives under /api/v1)."""
    return redirect(url_for("dashboard.index"))


def init_app(app: Flask) -> None:
    from . import events, hub

    app.register_blueprint(bp)
    app.add_url_rule("/", "root", root)
    events.init_app(app)
    app.extensions[bell.HUB] = hub.EventHub(app)
