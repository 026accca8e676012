"""Browser sessions: POST /api/v1/auth/login, /logout and /password (JWT in an HttpOnly cookie).

Logout revokes the session server-side; a password change revokes every session of the account
and starts a new one for the browser that made it."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from serving import accounts, auth, bell, db, ratelimit
from serving.accounts import check_login, normalize_email
from serving.api import auth_bp, json_body
from serving.api.openapi import doc
from serving.errors import ApiError
from serving.protocol import LoginRequest, PasswordChange, Session


@auth_bp.post("/login")
@doc(
    "Log in with email and password: sets the session cookie",
    body=LoginRequest,
    responses={200: Session},
    auth=False,
    errors=(400, 401, 403, 429, 503),
)
def login() -> Any:
    data = LoginRequest.model_validate(json_body())
    account = _check_password(normalize_email(data.email), data.password)
    return _session_response(account["id"], account["email"])


def _check_password(email: str, password: str) -> dict[str, Any]:
    """`check_login` behind the login throttle: counted, and refused (429) before any password is
    hashed when the client or the account is over its limit."""
    throttle = ratelimit.login_throttle()
    throttle.attempt(email, request.remote_addr or "unknown")
    try:
        with db.read() as conn:
            account = check_login(conn, email, password)
    except ApiError as e:
        if e.status == 401:
            throttle.failed(email)
        raise
    throttle.succeeded(email)
    return account


def _session_response(account_id: int, email: str) -> Any:
    rv = current_app.response_class(mimetype="application/json")
    session = auth.start_session(rv, account_id, email)
    rv.set_data(Session(**session).model_dump_json())
    return rv


@auth_bp.post("/password")
@doc(
    "Change your password (browser session only): ends every session of the account and "
    "starts a new one for this browser",
    body=PasswordChange,
    responses={200: Session},
    errors=(400, 401, 403, 429, 503),
)
def change_password() -> Any:
    principal = auth.authenticate()
    if principal.key is not None:
        raise ApiError(
            403, "Changing the password needs a browser session.", code="session_required"
        )
    data = PasswordChange.model_validate(json_body())
    with db.read() as conn:
        email = accounts.email_of(conn, principal.account_id)
    try:
        _check_password(email, data.current_password)
    except ApiError as e:
        if e.status != 401:
            raise
        raise ApiError(
            400,
            "The current password is incorrect.",
            param="current_password",
            code="invalid_credentials",
        ) from e
    with db.write() as conn:
        accounts.set_password(conn, principal.account_id, data.new_password)
    bell.ring(current_app, principal.account_id, reauth=True)  # its sockets, on every host
    return _session_response(principal.account_id, email)


@auth_bp.post("/logout")
@doc(
    "Log out: ends the session server-side and clears its cookies",
    responses={204: None},
    auth=False,
    errors=(),
)
def logout() -> Any:
    rv = current_app.response_class(status=204)
    auth.end_session(rv)
    return rv
