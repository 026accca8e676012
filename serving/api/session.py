"""Browser sessions: POST /api/v1/auth/login and /logout (JWT in an HttpOnly cookie)."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from serving import auth, db, ratelimit
from serving.accounts import check_login, normalize_email
from serving.api import auth_bp
from serving.api.openapi import doc
from serving.errors import ApiError
from serving.protocol import LoginRequest, Session


@auth_bp.post("/login")
@doc(
    "Log in with email and password: sets the session cookie",
    body=LoginRequest,
    responses={200: Session},
    auth=False,
    errors=(400, 401, 403, 429, 503),
)
def login() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    data = LoginRequest.model_validate(body)
    email = normalize_email(data.email)
    throttle = ratelimit.login_throttle()
    throttle.attempt(email, request.remote_addr or "unknown")  # before any password is hashed
    try:
        with db.read() as conn:
            account = check_login(conn, email, data.password)
    except ApiError as e:
        if e.status == 401:
            throttle.failed(email)
        raise
    throttle.succeeded(email)
    rv = current_app.response_class(mimetype="application/json")
    session = auth.start_session(rv, account["id"], account["email"])
    rv.set_data(Session(**session).model_dump_json())
    return rv


@auth_bp.post("/logout")
@doc("Log out: clears the session cookie", responses={204: None}, auth=False, errors=())
def logout() -> Any:
    rv = current_app.response_class(status=204)
    auth.end_session(rv)
    return rv
