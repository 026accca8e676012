"""A lean HTTP/1.1 client for the request path to the engines (one JSON POST, a JSON or SSE answer).

Written by hand on purpose: the libraries that do this job cost the gateway more than 10% of a
request's CPU. Client CPU per request against a fast upstream, with the extra as a share of the
gateway's CPU per request had it used the library (gateway 0.86 ms per json and 1.24 ms per
streamed request, 16 kept-alive clients; medians of 8 interleaved rounds, 2-core shared machine):

    json:    wire 0.053 ms, urllib3 0.248 (+18.5%), httpcore 0.292 (+21.7%), httpx 0.510 (+34.6%)
    stream:  wire 0.082 ms, urllib3 0.301 (+15.0%), httpcore 0.379 (+19.4%), httpx 0.625 (+30.5%)

    python benchmarks/gateway.py --libraries --rounds 8 --n 400 --port-base 19300

(two earlier runs: urllib3 +15.7% / +15.4% json, +13.5% / +15.3% stream). Python-level header
handling is nearly all of the libraries' cost. The engines are vLLM's own servers (uvicorn) on a
trusted network, so the client needs only what they send: a status line, headers, and a body framed
by Content-Length, chunked transfer encoding, or the connection closing. Everything else (health
probes, metrics) stays on httpx.

Reads are plain `recv` calls on the socket with a timeout, so a stream can wake every few seconds
to send the client a keep-alive without a reader thread, and closing it shuts the socket (the
engine sees the disconnect and aborts the request).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Generator, Iterator
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024


class WireError(Exception):
    """The exchange failed after a connection was made (reset, timeout, malformed answer)."""


class ConnectFailed(WireError):
    """No connection could be made: nothing was sent."""


class Answer:
    """A response whose head has been read; the body is read through `read()` or `iter_raw()`."""

    def __init__(self, conn: Conn, status: int, headers: dict[str, str]) -> None:
        self.conn = conn
        self.status = status
        self.headers = headers
        te = headers.get("transfer-encoding", "").lower()
        self.chunked = "chunked" in te
        length = headers.get("content-length")
        self.length = int(length) if length is not None and not self.chunked else None
        if status < 200 or status in (204, 304):
            self.length, self.chunked = 0, False
        self.keep = headers.get("connection", "").lower() != "close"
        self.done = False

    def read(self) -> bytes:
        return b"".join(part for part in self.iter_raw() if part is not None)  # no idle ticks

    def iter_raw(self, idle_s: float | None = None) -> Iterator[bytes | None]:
        """The body's bytes as they arrive; `None` whenever nothing came for `idle_s` seconds
        (only when given). When the body ends the connection goes back to its pool if it can be
        reused."""
        c = self.conn
        if self.length is not None:
            yield from c.exactly(self.length, idle_s, "connection closed before the body ended")
        elif self.chunked:
            yield from self._chunks(idle_s)
        else:  # delimited by the connection closing
            self.keep = False
            if c.buf:
                data, c.buf = c.buf, b""
                yield data
            while True:
                got = c.recv(idle_s)
                if got is None:
                    yield None
                    continue
                if not got:
                    break
                yield got
        self.done = True
        c.finished(self.keep)

    def _chunks(self, idle_s: float | None) -> Iterator[bytes | None]:
        c = self.conn
        while True:
            line = yield from c.line(idle_s)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (yield from c.line(idle_s)):  # trailers, up to the blank line
                    pass
                return
            yield from c.exactly(size, idle_s, "connection closed inside a chunk")
            if (yield from c.line(idle_s)) != b"":
                raise WireError("malformed chunk")

    def close(self) -> None:
        """Abandon the body: the connection is shut (the engine sees the client go)."""
        if not self.done:
            self.done = True
            self.conn.abort()


class Conn:
    def __init__(self, pool: Pool, sock: socket.socket) -> None:
        self.pool = pool
        self.sock = sock
        self.buf = b""
        self.deadline_s = pool.read_timeout_s

    def recv(self, idle_s: float | None = None) -> bytes | None:
        """Bytes from the socket (b"" at EOF). With `idle_s`, None after that long with nothing,
        until the read timeout has passed in total."""
        if idle_s is None:
            try:
                return self.sock.recv(65536)
            except TimeoutError as e:
                raise WireError("read timed out") from e
            except OSError as e:
                raise WireError(f"read failed: {e}") from e
        self.sock.settimeout(idle_s)
        t0 = time.monotonic()
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            self.deadline_s -= time.monotonic() - t0
            if self.deadline_s <= 0:
                raise WireError("read timed out") from None
            return None
        except OSError as e:
            raise WireError(f"read failed: {e}") from e
        finally:
            self.sock.settimeout(self.pool.read_timeout_s)

    def exactly(self, n: int, idle_s: float | None, eof: str) -> Iterator[bytes | None]:
        """The next `n` bytes as they arrive (None while idle); WireError(`eof`) if the
        connection ends first."""
        while n > 0:
            if not self.buf:
                got = self.recv(idle_s)
                if got is None:
                    yield None
                    continue
                if not got:
                    raise WireError(eof)
                self.buf = got
            part, self.buf = self.buf[:n], self.buf[n:]
            n -= len(part)
            yield part

    def line(self, idle_s: float | None) -> Generator[None, None, bytes]:
        """A generator returning one CRLF-terminated line (without it), yielding None while idle."""
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                out, self.buf = self.buf[:end], self.buf[end + 2 :]
                return out
            if len(self.buf) > _MAX_HEAD:
                raise WireError("line too long")
            got = self.recv(idle_s)
            if got is None:
                yield None
                continue
            if not got:
                raise WireError("connection closed mid-line")
            self.buf += got

    def finished(self, reusable: bool) -> None:
        if reusable and not self.buf:
            self.pool.put(self)
        else:
            self.close()

    def abort(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Pool:
    """Keep-alive connections to one server (an engine replica)."""

    def __init__(
        self, url: str, connect_timeout_s: float, read_timeout_s: float, max_idle: int = 512
    ) -> None:
        u = urlsplit(url)
        if u.scheme != "http":
            raise ValueError(f"engine URL must be http:// (got {url})")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.prefix = u.path.rstrip("/")
        self.host_header = u.netloc.encode()
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_idle = max_idle
        self._idle: list[Conn] = []
        self._lock = threading.Lock()

    def _get(self) -> tuple[Conn, bool]:
        """A connection and whether it was reused."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            # an idle connection the server closed (or wrote to) is readable: drop it. (poll, not
            # select: select() fails on a descriptor above 1023, which a busy worker reaches)
            readable = select.poll()
            readable.register(conn.sock, select.POLLIN)
            if not readable.poll(0):
                conn.deadline_s = self.read_timeout_s
                return conn, True
            conn.close()
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout_s)
        except OSError as e:
            raise ConnectFailed(f"connect to {self.host}:{self.port} failed: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.read_timeout_s)
        return Conn(self, sock), False

    def put(self, conn: Conn) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    def post(self, path: str, body: bytes, accept: str = "application/json") -> Answer:
        """POST `body` (JSON) and read the answer's head. A reused connection that the server had
        closed (nothing came back at all) is retried once on a new one: the request never reached
        the application."""
        head = b"".join(
            (
                b"POST ",
                (self.prefix + path).encode(),
                b" HTTP/1.1\r\nHost: ",
                self.host_header,
                b"\r\nContent-Type: application/json\r\nAccept: ",
                accept.encode(),
                b"\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
            )
        )
        for attempt in (0, 1):
            conn, reused = self._get()
            try:
                conn.sock.sendall(head + body)
                return _read_head(conn)
            except (OSError, WireError) as e:
                conn.close()
                if reused and attempt == 0 and _nothing_came(e):
                    continue
                if isinstance(e, WireError):
                    raise
                raise WireError(f"request failed: {e}") from e
        raise AssertionError("unreachable")


class _Closed(WireError):
    """The server closed the connection before sending a byte of the answer."""


def _nothing_came(e: BaseException) -> bool:
    return isinstance(e, (_Closed, BrokenPipeError, ConnectionResetError))


def _read_head(conn: Conn) -> Answer:
    while True:
        end = conn.buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(conn.buf) > _MAX_HEAD:
            raise WireError("response head too large")
        try:
            got = conn.recv()
        except WireError as e:  # a reset before any byte: the server dropped the idle connection
            if not conn.buf and isinstance(e.__cause__, ConnectionResetError):
                raise _Closed("connection reset before the response") from e
            raise
        if not got:
            if not conn.buf:
                raise _Closed("connection closed before the response")
            raise WireError("connection closed inside the response head")
        conn.buf += got
    head, conn.buf = conn.buf[:end], conn.buf[end + 4 :]
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise WireError(f"malformed status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for ln in lines[1:]:
        name, sep, value = ln.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    answer = Answer(conn, int(parts[1]), headers)
    if parts[0] == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        answer.keep = False
    return answer
