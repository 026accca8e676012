"""`GET /api/v1/events`: a WebSocket (flask-sock) pushing the caller's own events as they happen.

Authentication happens before the upgrade, so a bad caller gets an ordinary OpenAI-shaped 401/403:
- the browser session cookie (the page's own origin only: a cross-site page cannot open it), or
- an API key in `Authorization: Bearer inf_...`, or, for browsers (which cannot set headers on a
  WebSocket), as the subprotocol `inferbase.key.inf_...` next to `inferbase.events.v1`.

Frames are JSON text: `hello` (account, balance, model states), then `usage` (a finished request's
usage row with its routing decision), `balance` (new credit transactions and the balance after
them), `model` (a model's health or queue changed), and `lagging` when events were dropped for a
client that reads too slowly. The credentials are re-checked every `EVENTS_REAUTH_S` seconds, and
at once when a key of the account is revoked or a session of it ends on any host (the hub's bell):
a revoked key, an ended session or a deactivated account closes the socket (code 4401/4403).

Each open socket holds a worker thread, so a process serves at most `EVENTS_MAX_PER_ACCOUNT`
sockets per account (default 8) and `EVENTS_MAX_TOTAL` in all (default 256); one more is closed
right after the upgrade with code 4429 and a reason that says which cap it met.
"""

from __future__ import annotations

import json
import logging
import queue
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, request
from flask_sock import Sock

from serving import auth, db
from serving.errors import ApiError

from .hub import RECHECK, TooManySockets, credits_snapshot, get_hub

logger = logging.getLogger(__name__)

SUBPROTOCOL = "inferbase.events.v1"
IDLE_WAKE_S = 5.0  # how soon a closed or revoked socket is noticed at worst (and re-checked)
KEY_SUBPROTOCOL = "inferbase.key."
CLOSE_TOO_MANY = 4429  # over a socket cap (like HTTP 429)

bp = Blueprint("events", __name__)
sock = Sock()  # only its route decorator is used: the route lives on `bp`


def _offered_key() -> str | None:
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    for proto in (p.strip() for p in offered.split(",")):
        if proto.startswith(KEY_SUBPROTOCOL):
            return proto[len(KEY_SUBPROTOCOL) :]
    return None


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def who() -> auth.Principal:
    """The caller, by header, subprotocol key or session cookie (same origin only)."""
    if request.headers.get("Authorization"):
        return auth.authenticate()
    key = _offered_key()
    if key is not None:
        return _key_principal(key)
    if request.cookies.get(auth.SESSION_COOKIE) and not _same_origin():
        raise ApiError(403, "Cross-origin WebSocket with a session cookie.", code="bad_origin")
    return auth.authenticate()


def _key_principal(token: str) -> auth.Principal:
    public = getattr(auth, "authenticate_key", None)
    if public is not None:
        return public(token)  # type: ignore[no-any-return]
    return auth._from_key(token, cached=False)


@bp.before_request
def _authenticate() -> None:
    g.principal = who()


def _drain(ws: Any) -> None:
    while ws.receive(timeout=0) is not None:  # we expect nothing from the client
        pass


@sock.route("/api/v1/events", bp=bp)
def events(ws: Any) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    principal: auth.Principal = g.principal
    hub = get_hub(app)
    reauth_s = float(app.config.get("EVENTS_REAUTH_S", 10.0))
    wake_s = min(IDLE_WAKE_S, reauth_s)
    try:
        sub = hub.subscribe(principal.account_id)
    except TooManySockets as e:
        logger.warning("events refused account=%s: %s", principal.account_id, e)
        ws.close(reason=CLOSE_TOO_MANY, message=str(e))
        return
    logger.info("events open account=%s key=%s", principal.account_id, principal.key_id)
    try:
        with db.read() as conn:
            credits = credits_snapshot(conn, principal.account_id, hub.micros_per_credit)
        hello = {
            "type": "hello",
            "account_id": principal.account_id,
            "key_id": principal.key_id,
            "credits": credits,
            "models": list(hub.models.values()),
        }
        ws.send(json.dumps(hello))
        checked = time.monotonic()
        while ws.connected:
            try:  # an idle socket wakes only this often: it costs its threads next to nothing
                event = sub.queue.get(timeout=wake_s)
            except queue.Empty:
                event = None
            recheck = event is not None and event.get("type") == RECHECK
            if event is not None and not recheck:
                ws.send(json.dumps(event))
            if sub.dropped:
                ws.send(json.dumps({"type": "lagging", "dropped": sub.dropped}))
                sub.dropped = 0
            _drain(ws)
            if recheck or time.monotonic() - checked > reauth_s:
                checked = time.monotonic()
                try:
                    who()
                except ApiError as e:
                    ws.close(reason=4401 if e.status == 401 else 4403, message=e.message[:120])
                    return
    finally:
        hub.unsubscribe(sub)
        logger.info("events closed account=%s", principal.account_id)


def init_app(app: Any) -> None:
    options = app.config.setdefault("SOCK_SERVER_OPTIONS", {})
    options.setdefault("subprotocols", [SUBPROTOCOL])
    options.setdefault("ping_interval", 25)
    app.register_blueprint(bp)
