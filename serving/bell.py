"""Ring the live-event hub's bell (`serving.dashboard.hub.EventHub.ring`) after a commit.

The API modules call this instead of importing the dashboard: an app built without the dashboard
has no hub and the calls do nothing; without the Redis bus a ring for new rows does nothing either
(the hub's poll finds them), so the chat path pays nothing for it then."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

HUB = "inferbase_events"  # the hub's key in app.extensions


def ring(app: Flask, account_id: int, reauth: bool = False) -> None:
    """`account_id` has new rows, or (`reauth`) lost a key or a session: its sockets on every
    host re-check their credentials now."""
    hub: Any = app.extensions.get(HUB)
    if hub is not None:
        hub.ring(account_id, reauth)


def for_rows(app: Flask) -> Callable[[int], None] | None:
    """What the chat path calls after committing rows, or None when nobody needs telling."""
    hub: Any = app.extensions.get(HUB)
    if hub is None or hub.bus is None:
        return None
    return hub.ring  # type: ignore[no-any-return]
