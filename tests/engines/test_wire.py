"""The engines' lean HTTP/1.1 client against a raw socket server that frames answers the ways a
server may: Content-Length, chunked with chunks split across packets, closing the connection, and
keep-alive connections the server drops while they are idle."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from serving.engines.wire import ConnectFailed, Pool, WireError
from tests.engines.conftest import free_port


class RawServer:
    """Answers each request on a connection with the next scripted list of byte pieces (sent
    with short pauses, so they arrive as separate reads)."""

    def __init__(
        self, script: list[list[bytes]], close_after: int | None = None, linger_s: float = 0
    ) -> None:
        self.script = list(script)
        self.linger_s = linger_s  # keep the connection open this long after the script
        self.close_after = close_after  # close each connection after this many answers
        self.bodies: list[bytes] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf, served = b"", 0
        with conn:
            while self.script:
                while b"\r\n\r\n" not in buf:
                    got = conn.recv(65536)
                    if not got:
                        return
                    buf += got
                head, _, buf = buf.partition(b"\r\n\r\n")
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buf) < n:
                    buf += conn.recv(65536)
                self.bodies.append(buf[:n])
                buf = buf[n:]
                for piece in self.script.pop(0):
                    conn.sendall(piece)
                    time.sleep(0.01)
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    return
            time.sleep(self.linger_s)

    def close(self) -> None:
        self.sock.close()


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


HEAD_CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def test_content_length_answers_reuse_one_connection():
    body = b'{"ok": true}'
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    srv = RawServer([[answer[:20], answer[20:]], [answer]])
    pool = Pool(srv.url, 1.0, 5.0)
    for _ in range(2):
        a = pool.post("/v1/chat/completions", b'{"x": 1}')
        assert a.status == 200 and a.read() == body
    assert srv.connections == 1 and srv.bodies == [b'{"x": 1}'] * 2
    pool.close()
    srv.close()


def test_chunked_body_split_across_reads_then_connection_is_reused():
    payload = chunked(b'data: {"a": 1}\n\n', b"data: [DONE]\n\n")
    # the head, then the chunk framing cut at awkward places (inside a size line, inside data)
    pieces = [HEAD_CHUNKED[:30], HEAD_CHUNKED[30:] + payload[:2], payload[2:9], payload[9:]]
    body = b'{"ok": 1}'
    srv = RawServer([pieces, [b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n" + body]])
    pool = Pool(srv.url, 1.0, 5.0)
    a = pool.post("/v1/chat/completions", b"{}", "text/event-stream")
    got = b"".join(x for x in a.iter_raw(0.5) if x is not None)
    assert got == b'data: {"a": 1}\n\ndata: [DONE]\n\n'
    assert pool.post("/v1/chat/completions", b"{}").read() == body
    assert srv.connections == 1
    pool.close()
    srv.close()


def test_idle_ticks_while_the_server_is_silent():
    srv = RawServer([[HEAD_CHUNKED]], linger_s=2)
    pool = Pool(srv.url, 1.0, 5.0)
    a = pool.post("/p", b"{}")
    it = a.iter_raw(0.05)
    assert next(it) is None and next(it) is None  # nothing came: keep-alive ticks
    a.close()
    pool.close()
    srv.close()


def test_body_ended_by_close_and_no_reuse():
    srv = RawServer(
        [[b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello ", b"world"]], close_after=1
    )
    pool = Pool(srv.url, 1.0, 5.0)
    a = pool.post("/p", b"{}")
    assert a.read() == b"hello world" and not a.keep
    assert pool._idle == []
    pool.close()
    srv.close()


def test_idle_connection_dropped_by_the_server_is_replaced():
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    srv = RawServer([[ok], [ok]], close_after=1)  # the server closes each connection after one
    pool = Pool(srv.url, 1.0, 5.0)
    assert pool.post("/p", b"{}").read() == b"ok"
    time.sleep(0.1)
    assert pool.post("/p", b"{}").read() == b"ok"
    assert srv.connections == 2
    pool.close()
    srv.close()


def test_idle_connection_reset_as_the_next_request_arrives_is_retried():
    """The race behind a keep-alive timeout: the server drops an idle connection just as the
    client reuses it, and the client's request meets a reset (no byte of an answer came back);
    the request never reached the application, so it goes again on a new connection."""
    import struct

    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    conns = []

    def serve() -> None:
        for n in range(2):
            conn, _ = lsock.accept()
            conns.append(conn)
            conn.recv(65536)
            conn.sendall(ok)
            if n == 0:  # the next request arrives, and the connection is reset unread
                conn.recv(65536)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    pool = Pool(f"http://127.0.0.1:{lsock.getsockname()[1]}", 1.0, 5.0)
    assert pool.post("/p", b"{}").read() == b"ok"
    assert pool.post("/p", b"{}").read() == b"ok"
    t.join(5)
    assert len(conns) == 2
    pool.close()
    lsock.close()


def test_truncated_chunk_is_an_error():
    srv = RawServer([[HEAD_CHUNKED + b"20\r\nonly a few bytes"]], close_after=1)
    pool = Pool(srv.url, 1.0, 5.0)
    a = pool.post("/p", b"{}")
    with pytest.raises(WireError):
        a.read()
    pool.close()
    srv.close()


def test_refused_connection_is_connect_failed():
    pool = Pool(f"http://127.0.0.1:{free_port()}", 0.5, 1.0)
    with pytest.raises(ConnectFailed):
        pool.post("/p", b"{}")


def test_connection_reuse_works_past_descriptor_1023():
    """A busy gateway holds more than 1,024 descriptors (streams, WebSockets, database files):
    the pooled connection's liveness check must not use select(), which fails past fd 1023."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("the descriptor limit is below 1,200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [socket.socket() for _ in range(1100)]  # push the pool's socket past 1023
    body = b'{"ok": true}'
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    srv = RawServer([[answer], [answer]])
    pool = Pool(srv.url, 1.0, 5.0)
    try:
        for _ in range(2):
            a = pool.post("/v1/chat/completions", b'{"x": 1}')
            assert a.status == 200 and a.read() == body
        assert srv.connections == 1
    finally:
        pool.close()
        srv.close()
        for s in filler:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
