"""Live-event WebSockets are capped per account and per process: one more is closed with code 4429
and a reason, and a freed place can be taken again. Against a real threaded server."""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from websocket import ABNF, WebSocket, create_connection
from werkzeug.serving import make_server

from serving.testing.fakes import FakeEngines, FakeRouter
from tests.serving.conftest import ApiActions, Tenant, build_app


@pytest.fixture
def served(sqlite_url: str, tmp_path) -> Iterator[tuple[ApiActions, str]]:  # type: ignore[no-untyped-def]
    app = build_app(
        sqlite_url,
        tmp_path,
        FakeEngines(),
        FakeRouter(),
        EVENTS_MAX_PER_ACCOUNT=2,
        EVENTS_MAX_TOTAL=3,
        EVENTS_REAUTH_S=0.2,  # a closed socket is noticed within this
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)  # an ephemeral port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ApiActions(app, app.test_client()), f"ws://127.0.0.1:{server.server_port}/api/v1/events"
    server.shutdown()
    thread.join(5)
    app.extensions["db"].dispose()


def _open(url: str, t: Tenant) -> WebSocket:
    return create_connection(url, header=[f"Authorization: Bearer {t.key}"], timeout=10)


def _hello(ws: WebSocket) -> None:
    assert json.loads(ws.recv())["type"] == "hello"


def _closed_with(ws: WebSocket) -> tuple[int, str]:
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == ABNF.OPCODE_CLOSE, (opcode, data)
    return struct.unpack("!H", data[:2])[0], data[2:].decode()


def test_sockets_are_capped_per_account_and_in_total(served):
    api, url = served
    a, b = api.tenant(), api.tenant()
    a1, a2 = _open(url, a), _open(url, a)
    _hello(a1)
    _hello(a2)
    code, reason = _closed_with(_open(url, a))
    assert code == 4429 and "for this account (2 open)" in reason
    b1 = _open(url, b)  # another account still gets its socket: 3 in all
    _hello(b1)
    code, reason = _closed_with(_open(url, b))
    assert code == 4429 and "on this server" in reason
    assert api.app.extensions["inferbase_events"].count() == 3
    a1.close()  # a freed place is taken again
    deadline = time.monotonic() + 10
    while True:
        ws = _open(url, b)
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == ABNF.OPCODE_TEXT:
            assert json.loads(data)["type"] == "hello"
            break
        assert time.monotonic() < deadline, "the closed socket's place was never freed"
        time.sleep(0.2)
    for s in (a2, b1, ws):
        s.close()


def test_logout_closes_the_sessions_live_socket(served):
    api, url = served
    t = api.tenant(password=True)
    browser = api.app.test_client()
    rv = browser.post("/api/v1/auth/login", json={"email": t.email, "password": "pw-" + t.email})
    assert rv.status_code == 200
    cookie = browser.get_cookie("inferbase_session").value
    ws = create_connection(url, cookie=f"inferbase_session={cookie}", timeout=10)
    _hello(ws)
    assert browser.post("/api/v1/auth/logout").status_code == 204
    while True:  # model events may come first; then the close at the next re-check
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == ABNF.OPCODE_CLOSE:
            break
    assert struct.unpack("!H", data[:2])[0] == 4401
    ws.close()
