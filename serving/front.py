"""Every request's way in: one WSGI middleware in front of the Flask app.

`Front` is the only place that gives a request its id (`X-Request-Id`, always the gateway's own:
a client's `X-Client-Request-Id` or `X-Request-Id` is kept apart as the client's id, echoed as
`X-Client-Request-Id` and logged beside ours, never trusted as ours), counts it in the Prometheus
metrics (`serving/metrics.py`), writes its one log line (`log_response`; a stream's when it ends,
with what it delivered and cost) and sends its errors. It pushes the app context (so `g` is the
same object for it and for Flask, which reuses a pushed context of its own app), then either

- answers a *lean* route itself: a view marked `@lean` is called with the `Incoming` request and
  returns a `Reply`, without Flask's URL matching, request context, hooks and `Response` object
  (the rule stays in Flask's URL map, for the OpenAPI spec and for the 405 other methods get), or
- hands the request to Flask, whose error handler (`serving.errors.init_app`) renders with the
  same `serving.errors.to_api_error` and `ApiError.body()` as the lean path.

Only the chat endpoint is lean: behind Flask's dispatch the same view cost 0.71 ms of CPU per JSON
request against 0.56 ms lean (+21.5% of its request CPU; whole app in one process, auth, ledger and
engine call included; medians of 8 interleaved rounds of 400 on a shared 2-core machine; an earlier
run +25.0%), more than the 10% that would make Flask's dispatch good enough:

    python benchmarks/gateway.py --libraries --parts dispatch --rounds 8 --n 400 --port-base 19300
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

from flask import Flask, g, has_request_context, request

from serving import cors
from serving.errors import to_api_error
from serving.incoming import Incoming

logger = logging.getLogger("serving")

STATUS = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}
JSON_HEADERS = {"Content-Type": "application/json"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass(slots=True)
class Reply:
    """A lean route's answer: a JSON body, or an SSE stream of frames to send as they come."""

    status: int
    headers: dict[str, str]
    body: bytes | Iterator[bytes]


LeanView = Callable[[Incoming], Reply]
V = TypeVar("V", bound=LeanView)


def lean(view: V) -> V:
    """Mark a view (registered on a blueprint as usual) to be answered by `Front` directly."""
    view._lean = True  # type: ignore[attr-defined]
    return view


def request_id() -> str:
    """A new request id: the gateway's own, whatever the client sent."""
    return "req_" + secrets.token_hex(8)


def client_request_id(environ: dict[str, Any]) -> str | None:
    """The client's own id for its request (OpenAI's `X-Client-Request-Id`, or `X-Request-Id`),
    when it is a sane token; kept as a separate field, never used as the gateway's id."""
    sent = environ.get("HTTP_X_CLIENT_REQUEST_ID") or environ.get("HTTP_X_REQUEST_ID", "")
    return sent if sent and _REQUEST_ID.match(sent) else None


def log_response(
    method: str,
    path: str,
    route: str,
    status: int,
    rid: str,
    principal: Any,
    t0: float,
    call: Any = None,
    always: bool = False,
) -> None:
    """The request's one log line: every chat request (`always`: lean routes) and every error at
    INFO, every other request at DEBUG. Its fields also go on the record (`extra`), which the JSON
    format (`serving.logs`) writes out; with a chat call, what it was billed and how it was routed
    (`Call.log_fields`). Never the body or a raw key."""
    if not logger.isEnabledFor(logging.INFO if always or status >= 400 else logging.DEBUG):
        return
    latency = (time.perf_counter() - t0) * 1000
    key_id = principal.key_id if principal else None
    crid = g.get("client_request_id")
    fields: dict[str, Any] = {
        "summary": f"{method} {path} {status}",  # the JSON line's message (serving.logs)
        "request_id": rid,
        "client_request_id": crid,
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "key_id": key_id,
        "latency_ms": round(latency, 3),
    }
    msg = "%s %s %d request_id=%s client_request_id=%s key=%s latency_ms=%.1f"
    args: tuple[Any, ...] = (method, path, status, rid, crid, key_id, latency)
    if call is not None:
        more = call.log_fields()
        fields.update(more)
        msg += " " + " ".join(f"{k}=%s" for k in more)
        args += tuple(more.values())
    logger.info(msg, *args, extra=fields)


class Front:
    def __init__(self, app: Flask, flask_wsgi: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.flask_wsgi = flask_wsgi
        self.lean: dict[tuple[str, str], LeanView] = {}
        self.cors = bool(app.extensions.get("cors_origins"))  # serving/cors.py
        self.metrics = app.extensions.get("metrics")  # serving/metrics.py; None when off
        for rule in app.url_map.iter_rules():
            view = app.view_functions.get(rule.endpoint)
            if getattr(view, "_lean", False):
                if rule.arguments:
                    raise ValueError(f"a lean route has no URL variables: {rule.rule}")
                for method in rule.methods or ():
                    if method not in ("HEAD", "OPTIONS"):
                        self.lean[(method, rule.rule)] = view  # type: ignore[assignment]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        t0 = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        ctx = self.app.app_context()
        ctx.push()
        kept = False
        try:
            g.t0 = t0
            rid = g.request_id = request_id()
            crid = g.client_request_id = client_request_id(environ)
            ids = [("X-Request-Id", rid)]
            if crid is not None:
                ids.append(("X-Client-Request-Id", crid))
            view = self.lean.get((method, path))
            if view is None:

                def start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                    headers.extend(ids)
                    code = int(status[:3])
                    route = _flask_route()
                    if self.metrics is not None:
                        self.metrics.request(route, method, code)
                    principal, call = g.get("principal"), g.get("call")
                    log_response(method, path, route, code, rid, principal, t0, call)
                    return start_response(status, headers, *exc)

                return self.flask_wsgi(environ, start)
            try:
                reply = view(Incoming(environ))
            except Exception as e:
                err = to_api_error(e)
                reply = Reply(err.status, {**JSON_HEADERS, **err.headers}, err.body())
            if self.metrics is not None:
                self.metrics.request(path, method, reply.status)
            headers = list(reply.headers.items())
            headers.extend(ids)
            if self.cors:
                headers.extend(cors.lean_headers(self.app, environ.get("HTTP_ORIGIN", "")))
            if isinstance(reply.body, bytes):
                log_response(
                    method, path, path, reply.status, rid, g.get("principal"), t0,
                    g.get("call"), always=True,
                )  # fmt: skip
                headers.append(("Content-Length", str(len(reply.body))))
                start_response(STATUS[reply.status], headers)
                return [reply.body]
            start_response(STATUS[reply.status], headers)
            kept = True
            return _Stream(reply.body, ctx, self.metrics, (method, path, reply.status, rid, t0))
        finally:
            if not kept:
                ctx.pop()


def _flask_route() -> str:
    """The URL rule Flask matched (a metrics label of bounded cardinality), or `unmatched`."""
    rule = request.url_rule if has_request_context() else None
    return rule.rule if rule is not None else "unmatched"


class _Stream:
    """A lean stream's frames, with the app context kept until the server closes the response
    (WSGI servers call `close()` whether or not they iterated, so the stream always settles);
    its log line is written then, when what it delivered and cost is known."""

    __slots__ = ("frames", "ctx", "metrics", "request")

    def __init__(
        self,
        frames: Iterator[bytes],
        ctx: Any,
        metrics: Any,
        request: tuple[str, str, int, str, float],
    ) -> None:
        self.frames = frames
        self.ctx = ctx
        self.metrics = metrics
        self.request = request
        if metrics is not None:
            metrics.stream_opened()

    def __iter__(self) -> Iterator[bytes]:
        return self.frames

    def close(self) -> None:
        if self.ctx is None:
            return
        try:
            close = getattr(self.frames, "close", None)
            if close is not None:
                close()
        finally:
            ctx, self.ctx = self.ctx, None
            try:
                if self.metrics is not None:
                    self.metrics.stream_closed()
                method, path, status, rid, t0 = self.request
                log_response(
                    method, path, path, status, rid, g.get("principal"), t0, g.get("call"),
                    always=True,
                )  # fmt: skip
            finally:
                ctx.pop()
