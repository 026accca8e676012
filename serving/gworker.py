"""gunicorn's stock `gthread` worker with two fixes: pipelined requests are answered, and a
graceful stop closes idle kept-alive connections at once; and its own error answers (request line
or headers too large, malformed requests) are OpenAI-shaped JSON like every other error.

Stock `gthread` (gunicorn 26.2) puts a kept-alive connection back on its poller after each request;
requests a client had pipelined behind it are already in the parser's buffer, not on the socket, so
the poller never wakes for them and they wait out the keep-alive timeout unanswered. And on SIGTERM
its shutdown loop sleeps on the poller up to the whole graceful timeout (30 s) while an idle
kept-alive connection is open. Both are behaviour, not speed: the worker adds no CPU to a request.

Speed was measured and is left to gunicorn. Until commit 71dabea this worker also kept a kept-alive
connection on the thread that served it while requests came back to back (no hand-off to the main
thread per request), cached the Date header and skipped the access-log check. Against stock
`gthread` with SO_REUSEPORT, the gateway's CPU per request (3 workers, medians of 8 interleaved
rounds of 400) differed by less than 10% and by less than the spread between rounds: stock gthread
cost -11% / +7% / +8% of its request CPU beyond that worker (json at 1 and 16 clients, stream at
16; 1.03 / 0.90 / 1.20 ms against 1.14 / 0.84 / 1.10 ms), and -11% / -8% in an earlier run. So the
speed-ups are gone. Measured with, at that commit:

    python benchmarks/gateway.py --libraries --parts worker --rounds 8 --n 400 --port-base 19300

The same command now finds this worker and stock gthread equal within the noise (stock: +2.8% /
+1.4% / -0.0%; 0.88 / 0.86 / 1.24 ms per request here).

The worker uses these gthread internals: `handle()` returning True for a connection to keep, the
connection's `parser.unreader.buf`, `murder_keepalived()`/`murder_pending()` called once per loop,
and the `keepalived_conns`/`pending_conns` queues, `poller` and `nr_conns` they work on
(tests/serving/test_gworker.py runs it under real gunicorn).

    gunicorn --worker-class serving.gworker.Worker ...
"""

from __future__ import annotations

import html
import io
import re
from typing import Any

import orjson
from gunicorn import util
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.gthread import ThreadWorker

from serving.errors import TYPES, error_payload

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ([^\r\n]*)")
_HTML_MESSAGE = re.compile(rb"</h1>(.*?)</body>", re.S)
_CODES = {
    400: "invalid_http_request",
    403: "forbidden",
    417: "expectation_failed",
    431: "request_headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def buffered(conn: Any) -> bool:
    """Whether the connection's parser already holds bytes of a next (pipelined) request."""
    unreader = getattr(conn.parser, "unreader", None)
    return unreader is not None and unreader.buf.seek(0, io.SEEK_END) > 0


class _Captured:
    """Stands in for the client socket while gunicorn's `handle_error` classifies, logs and renders
    an error it met before the app ran; what it writes is kept to be answered as JSON."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.data += data

    def __getattr__(self, name: str) -> Any:  # anything else gunicorn may ask of the socket
        return getattr(self._sock, name)


def json_error(captured: bytes, exc: BaseException) -> bytes:
    """gunicorn's HTML error answer (`util.write_error`) as the same status with an OpenAI-shaped
    JSON body; the answer unchanged if it is not one."""
    head = _STATUS_LINE.match(captured)
    if head is None:
        return captured
    status, reason = int(head.group(1)), head.group(2).decode("latin-1")
    found = _HTML_MESSAGE.search(captured)
    message = html.unescape(found.group(1).decode("latin-1")).strip() if found else ""
    if isinstance(exc, LimitRequestLine):
        code = "request_line_too_large"
    elif isinstance(exc, LimitRequestHeaders):
        code = "request_headers_too_large"
    else:
        code = _CODES.get(status, "invalid_http_request")
    kind = TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    body = orjson.dumps(error_payload(message or reason, kind, None, code))
    return (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1") + body


class Worker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no types
    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's own answers (a request line or headers too large: 400/431, a malformed
        request: 400, ...) in the API's error shape instead of an HTML page. gunicorn still decides
        the status and message, logs and writes the access log line."""
        captured = _Captured(client)
        super().handle_error(req, captured, addr, exc)
        try:
            util.write_nonblock(client, json_error(captured.data, exc))
        except Exception:
            self.log.debug("Failed to send error message.")

    def handle(self, conn: Any) -> Any:
        keep = super().handle(conn)
        # True: answered, and the connection stays open (not _DEFER, not False)
        while keep is True and self.alive and buffered(conn):
            keep = super().handle(conn)
        return keep

    def murder_keepalived(self) -> None:
        """On a graceful stop, idle kept-alive connections are closed at once. Requests in flight
        still finish. This runs after the poller's events of the round were dispatched, so no
        event of a closed socket is pending."""
        if self.alive:
            super().murder_keepalived()
        else:
            self._close_all(self.keepalived_conns)

    def murder_pending(self) -> None:
        if self.alive:
            super().murder_pending()
        else:
            self._close_all(self.pending_conns)

    def _close_all(self, idle: Any) -> None:
        while idle:
            conn = idle.popleft()
            try:
                self.poller.unregister(conn.sock)
            except (OSError, KeyError, ValueError):
                pass  # already unregistered
            self.nr_conns -= 1
            conn.close()


def _bound(address: Any) -> str:
    """One `--bind` address as gunicorn's listener names it."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return f"fd://{address}" if isinstance(address, int) else f"unix:{address}"


class Logger(GunicornLogger):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's logger, except that with SO_REUSEPORT (every worker binds its own socket and the
    master none) the master's "Listening at:" line names the bound address instead of nothing,
    and its lines are JSON when the app's are (`INFERBASE_LOG_FORMAT`, serving/logs.py), so one
    stderr carries one format.

        gunicorn --logger-class serving.gworker.Logger ...
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        from serving import logs

        fmt = logs.log_format()
        logs.reformat(self.error_log.handlers, fmt)
        logs.reformat(self.access_log.handlers, fmt)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if msg.startswith("Listening at: %s") and args and not args[0]:
            where = ",".join(_bound(a) for a in self.cfg.address)
            args = (f"{where} (a socket per worker: SO_REUSEPORT)", *args[1:])
        super().info(msg, *args, **kwargs)
