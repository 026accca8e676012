"""What the chat hot path reads of a request, straight from the WSGI environ.

The chat endpoint runs without a werkzeug `Request` (see `serving.api.fast`); this is the little it
needs: headers, a cookie, the method and the body, with the body-size limit enforced."""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from werkzeug.http import parse_cookie
from werkzeug.wsgi import get_input_stream

from serving.errors import ApiError

logger = logging.getLogger("serving")
_UNPREFIXED = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


class Incoming:
    __slots__ = ("environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    @property
    def method(self) -> str:
        return str(self.environ.get("REQUEST_METHOD", "GET"))

    def header(self, name: str, default: str | None = None) -> str | None:
        key = name.upper().replace("-", "_")
        return self.environ.get(key if key in _UNPREFIXED else "HTTP_" + key, default)

    def cookie(self, name: str) -> str | None:
        raw = self.environ.get("HTTP_COOKIE")
        return parse_cookie(raw).get(name) if raw else None

    def body(self, limit: int | None) -> bytes:
        """The whole body; 413 past `limit` bytes (checked before reading when the length is
        declared; a chunked body is cut off at the limit while it is read)."""
        declared = self.environ.get("CONTENT_LENGTH")
        if declared and not self.environ.get("wsgi.input_terminated"):
            try:
                size = int(declared)
            except ValueError:
                raise ApiError(400, "Invalid Content-Length header.") from None
            if size < 0:
                raise ApiError(400, "Invalid Content-Length header.")
            if limit is not None and size > limit:
                raise too_large()
            return bytes(self.environ["wsgi.input"].read(size)) if size else b""
        return bytes(get_input_stream(self.environ, max_content_length=limit).read())


def too_large() -> ApiError:
    return ApiError(
        413,
        "The request body is larger than this server accepts.",
        code="request_too_large",
    )


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id(sent: str) -> str:
    """The client's `X-Request-Id` when it is a sane token, else a new one."""
    return sent if sent and _REQUEST_ID.match(sent) else "req_" + secrets.token_hex(8)


def log_response(method: str, path: str, status: int, rid: str, principal: Any, t0: float) -> None:
    """The request log line (every error; every request at DEBUG), for Flask's after-request hook
    and the chat fast path alike. Never the body or a raw key."""
    if status >= 400 or logger.isEnabledFor(logging.DEBUG):
        logger.info(
            "%s %s %d request_id=%s key=%s latency_ms=%.1f",
            method,
            path,
            status,
            rid,
            principal.key_id if principal else None,
            (time.perf_counter() - t0) * 1000,
        )
