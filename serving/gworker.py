"""gunicorn's gthread worker, with kept-alive connections served by the thread that has them.

In the stock `gthread` worker every request on a kept-alive connection crosses two threads: the
main thread polls the idle connection and submits it to the pool; the pool thread parses and
answers it, then hands the connection back through a pipe to the main thread, which registers it
with its poller again. Under load that hand-off (a future, a pipe write and read, two selector
updates and two GIL hand-overs) was a fifth of the gateway's Python time per request.

Here the pool thread that answered a request waits up to `LINGER_S` for the client's next request
on the same connection and serves it at once; only a connection that stays quiet longer goes back
to the main thread's poller, exactly as in `gthread` (so idle keep-alive connections still hold no
thread, and the keep-alive timeout and `max_requests` work as before). A graceful stop closes idle
kept-alive connections at once instead of waiting out the graceful timeout.

    gunicorn --worker-class serving.gworker.Worker ...
"""

from __future__ import annotations

import io
import select
from typing import Any

from gunicorn import glogging
from gunicorn.workers.gthread import ThreadWorker

LINGER_S = 0.05  # a client sending requests back to back keeps its thread


def readable(sock: Any, timeout_s: float) -> bool:
    """Whether the socket has bytes (or EOF) to read within `timeout_s`."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    try:
        return bool(p.poll(timeout_s * 1000))
    except (OSError, ValueError):  # closed underneath us
        return False


def buffered(conn: Any) -> bool:
    """Whether the connection's parser already holds bytes of a next (pipelined) request."""
    unreader = getattr(conn.parser, "unreader", None)
    return unreader is not None and unreader.buf.seek(0, io.SEEK_END) > 0


class Logger(glogging.Logger):
    """gunicorn's logger, with the access-log switch read once per (re)configuration: the stock
    `access()` re-reads five settings per request (through `Config.__getattr__`) to find out that
    the access log is off. Given to gunicorn as `--logger-class`, its documented extension point."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.access_on = bool(glogging.Logger.access_log_enabled.fget(self))  # type: ignore[attr-defined]

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.access_on:
            super().access(resp, req, environ, request_time)


class Worker(ThreadWorker):
    linger_s = LINGER_S

    def handle(self, conn: Any) -> Any:
        keep = super().handle(conn)
        # True: answered, and the connection stays open (not _DEFER, not False)
        while (
            keep is True and self.alive and (buffered(conn) or readable(conn.sock, self.linger_s))
        ):
            keep = super().handle(conn)
        return keep

    def murder_keepalived(self) -> None:
        """On a graceful stop, idle kept-alive connections are closed at once (gthread left them
        open until the keep-alive timeout, and its shutdown loop slept up to the whole graceful
        timeout before looking again). Requests in flight still finish. This runs after the
        poller's events of the round were dispatched, so no event of a closed socket is pending."""
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
