"""What the chat hot path reads of a request, straight from the WSGI environ.

A lean route (see `serving.front`) runs without a werkzeug `Request`; this is the little it needs:
headers, a cookie, the method and the body, with the body-size limit enforced."""

from __future__ import annotations

from typing import Any

from werkzeug.http import parse_cookie
from werkzeug.wsgi import get_input_stream

from serving.errors import ApiError

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
