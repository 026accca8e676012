"""Which bus carries live events; a Redis outage costs latency, never an event or a request."""

from __future__ import annotations

import queue
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from serving.dashboard import bus
from serving.dashboard.hub import get_hub
from serving.testing.fakes import FakeEngines, FakeRouter
from tests.serving.conftest import ApiActions, build_app


def _app(**config: Any) -> Any:
    """Only what `bus.from_config` reads of an app."""
    return type("App", (), {"config": config})()


def test_the_database_poll_is_the_default_without_redis() -> None:
    assert bus.from_config(_app()) is None
    assert bus.from_config(_app(REDIS_URL="redis://h:6379/0", EVENTS_BUS="poll")) is None
    found = bus.from_config(_app(REDIS_URL="redis://h:6379/0", REDIS_PREFIX="acme"))
    assert isinstance(found, bus.RedisBus) and found.channel == "acme:events"
    with pytest.raises(ValueError, match="needs INFERBASE_REDIS_URL"):
        bus.from_config(_app(EVENTS_BUS="redis"))
    with pytest.raises(ValueError, match="use auto, poll or redis"):
        bus.from_config(_app(REDIS_URL="redis://h:6379/0", EVENTS_BUS="kafka"))


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def test_redis_down_requests_succeed_and_the_safety_poll_delivers(
    tmp_path: Path,
) -> None:
    app = build_app(
        f"sqlite:///{tmp_path / 'test.db'}",
        tmp_path,
        FakeEngines(),
        FakeRouter(),
        REDIS_URL=f"redis://127.0.0.1:{_dead_port()}/0",
        RATELIMIT_STORAGE="database",  # this test is about the events bus alone
        EVENTS_SAFETY_POLL_S=0.5,
    )
    try:
        api = ApiActions(app, app.test_client())
        hub = get_hub(app)
        assert hub.bus is not None
        t = api.tenant()
        sub = hub.subscribe(t.account_id)
        try:
            t0 = time.monotonic()
            assert api.chat(t).status_code == 200  # its ring fails quietly
            kinds = set()
            while "usage" not in kinds:
                kinds.add(sub.queue.get(timeout=max(0.01, t0 + 5 - time.monotonic()))["type"])
            assert time.monotonic() - t0 < 5
        except queue.Empty:
            pytest.fail(f"no usage event within 5 s with Redis down (got {kinds})")
        finally:
            hub.unsubscribe(sub)
    finally:
        app.extensions["db"].dispose()
