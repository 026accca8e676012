"""serving.gworker.Worker under real gunicorn, as `inferbase serve` starts it: kept-alive
connections serve requests back to back and after a pause, pipelined requests are all answered,
and a graceful stop does not wait for idle connections."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving.cli import gunicorn_argv
from tests.serving.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
IDLE_S = 0.2  # a client quiet this long has its connection back on the worker's poller


@pytest.fixture
def server(tmp_path):
    procs = []

    def start(*extra: str) -> int:
        port = free_port()
        argv = gunicorn_argv(f"127.0.0.1:{port}", 1, 4, app="tests.serving.gworker_app:app")
        argv[-1:-1] = ["--keep-alive", "5", *extra]
        log = open(tmp_path / f"gunicorn-{port}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.1)
        raise RuntimeError((tmp_path / f"gunicorn-{port}.log").read_text())

    start.procs = procs  # type: ignore[attr-defined]
    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def ask(conn: http.client.HTTPConnection, path: str, body: bytes = b"") -> list[str]:
    conn.request("POST", path, body=body)
    rv = conn.getresponse()
    assert rv.status == 200
    return rv.read().decode().split()


def test_requests_back_to_back_and_after_a_pause_share_one_connection(server):
    port = server()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    answers = [ask(conn, f"/r{i}", b"x" * i) for i in range(30)]
    sock = conn.sock
    time.sleep(IDLE_S)  # quiet: the connection waits on the main thread's poller
    answers.append(ask(conn, "/after-pause", b"y" * 100))
    answers.append(ask(conn, "/right-after"))
    assert conn.sock is sock  # never reconnected: the same kept-alive connection throughout
    paths = [f"/r{i}" for i in range(30)] + ["/after-pause", "/right-after"]
    assert [a[2] for a in answers] == paths
    assert [int(a[3]) for a in answers] == list(range(30)) + [100, 0]
    assert len({a[0] for a in answers}) == 1
    conn.close()


def test_pipelined_requests_are_all_answered(server):
    port = server()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(3)))
    buf = b""
    deadline = time.monotonic() + 3  # well inside the 5 s keep-alive timeout
    while buf.count(b"HTTP/1.1 200") < 3 or not buf.endswith(b"/p2 0"):
        assert time.monotonic() < deadline, buf
        s.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    assert [p for p in (b"/p0", b"/p1", b"/p2") if p in buf] == [b"/p0", b"/p1", b"/p2"]
    s.close()


def test_max_requests_restarts_the_worker_on_a_kept_alive_connection(server):
    port = server("--max-requests", "5")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    pids = []
    for i in range(12):
        try:
            pids.append(ask(conn, f"/m{i}")[0])
        except (ConnectionError, http.client.HTTPException):
            conn.close()  # the worker closed it on its way out: a new connection, a new worker
            time.sleep(0.5)
            pids.append(ask(conn, f"/m{i}")[0])
    assert len(set(pids)) >= 2  # the 5th request ended the first worker; another took over


def test_idle_kept_alive_connections_do_not_hold_up_shutdown(server):
    port = server()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    ask(conn, "/one")
    time.sleep(IDLE_S)  # idle in the main thread's poller, as kept-alive clients mostly are
    proc = server.procs[-1][0]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert time.monotonic() - t0 < 5  # not the graceful timeout (30 s) nor the keep-alive (5 s)
    conn.close()


def test_serve_refuses_a_port_another_server_listens_on(tmp_path):
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    out = subprocess.run(
        [sys.executable, "-m", "serving.cli", "serve", "--port", str(port)],
        cwd=REPO,
        capture_output=True,
        text=True,
        # a fresh environment, with the test's own MLflow store: without one the app would load
        # the project's champion (<repo>/mlflow.db) and MLflow would write into its artifacts
        env={"PATH": "/usr/bin:/bin", "INFERBASE_HOME": str(tmp_path),
             "INFERBASE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
             "INFERBASE_ENGINES_FACTORY": "serving.testing.fakes:make_engines",
             "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
             "PYTHONPATH": str(REPO)},
        timeout=60,
    )  # fmt: skip
    taken.close()
    assert out.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr


def raw_answer(port: int, request: bytes) -> tuple[int, dict[str, str], dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    "request_bytes,status,code",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
         "request_headers_too_large"),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431,
         "request_headers_too_large"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request_line_too_large"),
        (b"GET\r\n\r\n", 400, "invalid_http_request"),
        (b"GET / HTTP/1.1\r\nBad Header Name: 1\r\n\r\n", 400, "invalid_http_request"),
    ],
)  # fmt: skip
def test_gunicorns_own_errors_are_openai_shaped_json(server, request_bytes, status, code):
    port = server()
    got, headers, body = raw_answer(port, request_bytes)
    assert (got, headers["Content-Type"]) == (status, "application/json")
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] is None
    assert body["error"]["message"] and "<" not in body["error"]["message"]
    # the worker still serves: the error closed only that connection
    assert ask(http.client.HTTPConnection("127.0.0.1", port, timeout=5), "/echo", b"ok")


def test_listening_line_names_the_address(server, tmp_path):
    port = server()
    log = tmp_path / f"gunicorn-{port}.log"
    lines = [x for x in log.read_text().splitlines() if "Listening at:" in x]
    assert len(lines) == 1, log.read_text()
    assert f"Listening at: http://127.0.0.1:{port} " in lines[0]
