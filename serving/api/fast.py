"""The chat endpoint without Flask's request dispatch: a WSGI middleware in front of the app.

`POST /api/v1/inference/chat/completions` is the gateway's hot path. Flask's request context,
URL matching, hooks and `Response` object cost about a fifth of its Python time per request, so
this answers it directly: an app context (for `current_app` and `g`), the endpoint's `handle()`,
errors rendered by the same `serving.errors.to_api_error` as every other route, and the request
id header and log line (`serving.incoming.log_response`) of the app's hooks. Every other request,
and this one when `FAST_CHAT` is off, goes to Flask unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

import orjson
from flask import Flask, g

from serving.api import chat
from serving.errors import to_api_error
from serving.incoming import Incoming, log_response, request_id

PATH = "/api/v1/inference/chat/completions"
STATUS = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}


class FastChat:
    def __init__(self, app: Flask, inner: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.inner = inner

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if (
            environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "POST"
            or not self.app.config.get("FAST_CHAT", True)
        ):
            return self.inner(environ, start_response)
        t0 = time.perf_counter()
        ctx = self.app.app_context()
        ctx.push()
        streaming = False
        try:
            g.t0 = t0
            rid = g.request_id = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
            try:
                reply = chat.handle(Incoming(environ))
            except Exception as e:
                err = to_api_error(e)
                body = orjson.dumps(err.payload())
                reply = chat.Reply(err.status, {**chat.JSON_HEADERS, **err.headers}, body)
            log_response("POST", PATH, reply.status, rid, g.get("principal"), t0)
            headers = list(reply.headers.items())
            headers.append(("X-Request-Id", rid))
            if isinstance(reply.body, bytes):
                headers.append(("Content-Length", str(len(reply.body))))
                start_response(STATUS[reply.status], headers)
                return [reply.body]
            start_response(STATUS[reply.status], headers)
            streaming = True
            return _Stream(reply.body, ctx)
        finally:
            if not streaming:
                ctx.pop()


class _Stream:
    """The SSE frames, with the app context kept until the server closes the response (WSGI
    servers call `close()` whether or not they iterated, so the stream always settles)."""

    __slots__ = ("frames", "ctx")

    def __init__(self, frames: Iterator[bytes], ctx: Any) -> None:
        self.frames = frames
        self.ctx = ctx

    def __iter__(self) -> Iterator[bytes]:
        return self.frames

    def close(self) -> None:
        try:
            close = getattr(self.frames, "close", None)
            if close is not None:
                close()
        finally:
            if self.ctx is not None:
                ctx, self.ctx = self.ctx, None
                ctx.pop()
