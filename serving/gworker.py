"""gunicorn's stock `gthread` worker with two fixes: pipelined requests are answered, and a
graceful stop closes idle kept-alive connections at once.

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

import io
from typing import Any

from gunicorn.workers.gthread import ThreadWorker


def buffered(conn: Any) -> bool:
    """Whether the connection's parser already holds bytes of a next (pipelined) request."""
    unreader = getattr(conn.parser, "unreader", None)
    return unreader is not None and unreader.buf.seek(0, io.SEEK_END) > 0


class Worker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no types
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
