"""The live event WebSocket against a real gunicorn gateway (2 workers): who may connect, that an
account receives only its own events, and that events written by another process arrive."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websocket import (
    WebSocket,
    WebSocketBadStatusException,
    WebSocketTimeoutException,
    create_connection,
)

from serving import accounts, db, ledger
from serving.testing.server import PASSWORD, Server

BOB, CY = "bob@example.com", "cy@example.com"


def ws_url(gateway: Server) -> str:
    return gateway.url.replace("http://", "ws://") + "/api/v1/events"


def login(gateway: Server, email: str) -> httpx.Client:
    client = httpx.Client(base_url=gateway.url, timeout=10)
    rv = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert rv.status_code == 200, rv.text
    return client


def new_key(client: httpx.Client, **body: Any) -> dict[str, Any]:
    rv = client.post(
        "/api/v1/inference/keys",
        json={"name": "events", **body},
        headers={"X-CSRF-Token": client.cookies["inferbase_csrf"]},
    )
    assert rv.status_code == 201, rv.text
    return rv.json()  # type: ignore[no-any-return]


def recv(ws: WebSocket, kind: str, timeout: float = 8.0) -> dict[str, Any]:
    """The next event of `kind`, skipping others (a request also moves the balance)."""
    ws.settimeout(timeout)
    while True:
        event = json.loads(ws.recv())
        assert event["type"] in ("hello", "usage", "balance", "model"), event
        if event["type"] == kind:
            return event  # type: ignore[no-any-return]


def nothing_but_models(ws: WebSocket, seconds: float) -> None:
    ws.settimeout(seconds)
    try:
        while True:
            event = json.loads(ws.recv())
            assert event["type"] == "model", f"unexpected event {event}"
    except WebSocketTimeoutException:
        pass


def test_each_account_gets_only_its_own_events_from_any_process(gateway: Server) -> None:
    bob, cy = login(gateway, BOB), login(gateway, CY)
    bob_key = new_key(bob, model_pool=["local/tiny-b"])
    # Bob by API key header, Cy by session cookie (as the browser does, from the same origin).
    bob_ws = create_connection(ws_url(gateway), header=[f"Authorization: Bearer {bob_key['key']}"])
    cookie = "; ".join(f"{k}={v}" for k, v in cy.cookies.items())
    cy_ws = create_connection(ws_url(gateway), cookie=cookie, origin=gateway.url)
    try:
        hello = recv(bob_ws, "hello")
        assert hello["key_id"] == bob_key["id"]
        assert hello["credits"]["available_micros"] == 2_000_000
        assert recv(cy_ws, "hello")["credits"]["available_micros"] == 1_000_000

        # A deposit written by this test process (not a gunicorn worker) reaches Bob's socket.
        engine = db.make_engine(gateway.db_url, pool_size=1)
        with db.write(engine) as conn:
            bob_id = accounts.require(conn, BOB)["id"]
            ledger.deposit(conn, bob_id, 250_000, "top-up")
        engine.dispose()
        event = recv(bob_ws, "balance")
        assert event["data"]["available_micros"] == 2_250_000
        assert [(t["kind"], t["amount_micros"]) for t in event["transactions"]] == [
            ("deposit", 250_000)
        ]

        # Bob's routed requests arrive as usage rows with their routing decision.
        for _ in range(3):
            rv = httpx.post(
                gateway.url + "/api/v1/inference/chat/completions",
                headers={"Authorization": f"Bearer {bob_key['key']}"},
                json={"model": "auto", "messages": [{"role": "user", "content": "hi there"}]},
            )
            assert rv.status_code == 200, rv.text
            usage = recv(bob_ws, "usage")["data"]
            assert usage["key_id"] == bob_key["id"] and usage["served_model"] == "local/tiny-b"
            assert usage["routing_task"] == "general_qa" and usage["routing_confidence"] == 0.9
            assert usage["cost_micros"] > 0
        # ... and Cy, listening all along, saw none of it.
        nothing_but_models(cy_ws, 1.0)
    finally:
        bob_ws.close()
        cy_ws.close()


def test_who_may_connect(gateway: Server) -> None:
    cy = login(gateway, CY)
    key = new_key(cy)["key"]
    # Browsers cannot set headers on a WebSocket: the key rides as a subprotocol instead.
    ws = create_connection(
        ws_url(gateway), subprotocols=["inferbase.events.v1", "inferbase.key." + key]
    )
    try:
        assert ws.getsubprotocol() == "inferbase.events.v1"
        assert recv(ws, "hello")["account_id"] > 0
    finally:
        ws.close()
    with pytest.raises(WebSocketBadStatusException) as e:
        create_connection(ws_url(gateway))
    assert e.value.status_code == 401 and b"missing_api_key" in e.value.resp_body
    with pytest.raises(WebSocketBadStatusException) as e:
        create_connection(ws_url(gateway), header=["Authorization: Bearer inf_nope"])
    assert e.value.status_code == 401
    # A session cookie is honoured only from the dashboard's own origin (no cross-site hijack).
    cookie = "; ".join(f"{k}={v}" for k, v in cy.cookies.items())
    with pytest.raises(WebSocketBadStatusException) as e:
        create_connection(ws_url(gateway), cookie=cookie, origin="http://evil.example")
    assert e.value.status_code == 403
    # Not a WebSocket handshake: a readable error, not a crash.
    rv = httpx.get(ws_url(gateway).replace("ws://", "http://"))
    assert rv.status_code == 400 and rv.json()["error"]["message"]


def test_revoking_the_key_closes_its_socket(gateway: Server) -> None:
    cy = login(gateway, CY)
    key = new_key(cy)
    ws = create_connection(ws_url(gateway), header=[f"Authorization: Bearer {key['key']}"])
    try:
        recv(ws, "hello")
        rv = cy.delete(
            f"/api/v1/inference/keys/{key['id']}",
            headers={"X-CSRF-Token": cy.cookies["inferbase_csrf"]},
        )
        assert rv.status_code in (200, 204), rv.text
        ws.settimeout(8)
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == 0x8:  # close
                break
        assert int.from_bytes(data[:2], "big") == 4403
        assert b"revoked" in data[2:]
    finally:
        ws.close()
