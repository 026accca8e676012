"""Who is calling: an API key (`Authorization: Bearer inf_...`) or a browser session (JWT cookie).

Session cookies are HttpOnly, SameSite=Lax JWTs. A state-changing request authenticated by the
cookie must echo the session's CSRF token in `X-CSRF-Token` (double submit: the token is also in the
readable `inferbase_csrf` cookie and inside the signed JWT). Each JWT names its row in `sessions`
(`jti`), read with the account on every cookie request: logout revokes the row, a password change
revokes every row of the account, so an old cookie stops working at once, server-side.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

import jwt
import sqlalchemy as sa
from flask import Flask, Response, current_app, g, request

from serving import bell, db, keys
from serving.errors import ApiError
from serving.incoming import Incoming
from serving.schema import accounts, sessions, utcnow

SESSION_COOKIE = "inferbase_session"
CSRF_COOKIE = "inferbase_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOUCH_EVERY_S = 60.0

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: int
    key: keys.KeyInfo | None  # None for a browser session

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key else None


class AuthState:
    def __init__(self, app: Flask) -> None:
        self.secret = keys.hash_secret(app.config["SECRET_KEY"])
        self.cache = keys.KeyCache(float(app.config["KEY_CACHE_TTL_S"]))
        self.touched: dict[str, float] = {}


def _state() -> AuthState:
    state: AuthState = current_app.extensions["auth"]
    return state


def _from_key(token: str, cached: bool) -> Principal:
    state = _state()
    if not token.startswith(keys.PREFIX):
        raise ApiError(401, "Invalid API key.", code="invalid_api_key")
    key_hash = keys.hash_key(state.secret, token)
    info = state.cache.get(key_hash) if cached else None
    if info is None:
        with db.read() as conn:
            info = keys.lookup(conn, key_hash)
        if info is None:
            raise ApiError(401, "Invalid API key.", code="invalid_api_key")
        state.cache.put(key_hash, info)
    if info.revoked:
        raise ApiError(403, "This API key has been revoked.", code="key_revoked")
    if not info.account_active:
        raise ApiError(403, "This account is deactivated.", code="account_deactivated")
    now = time.monotonic()
    if now - state.touched.get(info.id, -1e9) > TOUCH_EVERY_S:
        state.touched[info.id] = now
        with db.write() as conn:
            keys.touch(conn, info.id)
    return Principal(info.account_id, info)


_SESSION = (
    sa.select(accounts.c.active)
    .select_from(sessions.join(accounts, accounts.c.id == sessions.c.account_id))
    .where(
        sessions.c.id == sa.bindparam("sid"),
        sessions.c.revoked_at.is_(None),
        sessions.c.expires_at > sa.bindparam("now"),
    )
)


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(  # type: ignore[no-any-return]
        token, current_app.config["SECRET_KEY"], algorithms=["HS256"], options={"require": ["jti"]}
    )


def _from_session(token: str, inc: Incoming) -> Principal:
    try:
        claims = _claims(token)
    except jwt.PyJWTError as e:
        raise ApiError(401, "Invalid or expired session.", code="invalid_session") from e
    if inc.method not in SAFE_METHODS:
        sent = inc.header(CSRF_HEADER) or ""
        if not hmac.compare_digest(sent.encode(), str(claims.get("csrf", "")).encode()):
            raise ApiError(403, "Missing or invalid CSRF token.", code="csrf_failed")
    with db.read() as conn:
        active = conn.execute(
            _SESSION, {"sid": str(claims.get("jti", "")), "now": utcnow()}
        ).scalar()
    if active is None:
        raise ApiError(401, "Invalid or expired session.", code="invalid_session")
    if not active:
        raise ApiError(403, "This account is deactivated.", code="account_deactivated")
    return Principal(int(claims["sub"]), None)


def authenticate(cached: bool = False, inc: Incoming | None = None) -> Principal:
    """The caller of the current request (`inc`: the request as the chat fast path reads it;
    Flask's current request otherwise)."""
    inc = inc or Incoming(request.environ)
    header = inc.header("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Malformed Authorization header.", code="invalid_api_key")
        return _from_key(token.strip(), cached)
    cookie = inc.cookie(SESSION_COOKIE)
    if cookie:
        return _from_session(cookie, inc)
    raise ApiError(
        401,
        "Missing API key. Send 'Authorization: Bearer inf_...' or log in.",
        code="missing_api_key",
    )


def require_auth(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.principal = authenticate(cached=False)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def start_session(rv: Response, account_id: int, email: str) -> dict[str, Any]:
    """A new session row and its cookies on `rv` (the account's expired rows are dropped)."""
    ttl = int(current_app.config["SESSION_TTL_S"])
    csrf = secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl)
    sid = "ses_" + secrets.token_hex(16)
    with db.write() as conn:
        conn.execute(
            sessions.delete().where(
                sessions.c.account_id == account_id, sessions.c.expires_at <= now
            )
        )
        conn.execute(
            sessions.insert().values(
                id=sid, account_id=account_id, created_at=now, expires_at=expires
            )
        )
    token = jwt.encode(
        {"sub": str(account_id), "email": email, "csrf": csrf, "exp": expires, "jti": sid},
        current_app.config["SECRET_KEY"],
        algorithm="HS256",
    )
    secure = bool(current_app.config["SESSION_COOKIE_SECURE"]) or request.is_secure
    rv.set_cookie(
        SESSION_COOKIE, token, max_age=ttl, httponly=True, samesite="Lax", secure=secure, path="/"
    )
    rv.set_cookie(CSRF_COOKIE, csrf, max_age=ttl, httponly=False, samesite="Lax", secure=secure)
    return {"object": "session", "email": email, "csrf_token": csrf, "expires_at": expires}


def end_session(rv: Response) -> None:
    """Revoke the current request's session (if its cookie is valid) and clear the cookies."""
    token = request.cookies.get(SESSION_COOKIE)
    try:
        claims = _claims(token) if token else {}
    except jwt.PyJWTError:
        claims = {}
    sid = claims.get("jti")
    if sid:
        with db.write() as conn:
            conn.execute(
                sessions.update()
                .where(sessions.c.id == str(sid), sessions.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        bell.ring(current_app, int(claims["sub"]), reauth=True)  # its sockets, on every host
    rv.delete_cookie(SESSION_COOKIE, path="/")
    rv.delete_cookie(CSRF_COOKIE, path="/")


def init_app(app: Flask) -> None:
    from serving import accounts

    app.extensions["auth"] = AuthState(app)
    accounts.init_app(app)
