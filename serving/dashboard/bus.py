"""Cross-host wake-ups for the live-event hub: Redis pub/sub rings, the database holds the events.

Every worker's `EventHub` reads events from the shared database, so they reach sockets on any host;
without a bus each worker polls every `EVENTS_POLL_S` (0.5 s) while it holds a socket. With
`REDIS_URL` set (or `EVENTS_BUS=redis`) the worker that commits a reservation, a settlement or a
revocation rings the bell instead: it publishes the account ids on the channel
`<REDIS_PREFIX>:events`, and every worker on every host that holds a socket of one of those accounts
polls at once. The database poll stays as the safety net (`EVENTS_SAFETY_POLL_S`, 5 s), so a lost
message (Redis restarted, a subscriber reconnecting) delays an event, never loses it.

Why only a doorbell and not the events themselves: the rows are the truth (a usage row, a balance
after the transactions), ordering and late commits are already handled by the poll's look-back, and
a Redis outage then costs latency, not correctness. `ring` is a set insert on the request thread;
one publisher thread per worker sends the rung accounts at most every `COALESCE_S`, so a busy worker
publishes tens of messages a second, not one per request.

Message: JSON `{"accounts": [ids with new rows], "reauth": [ids whose sockets re-check at once]}`
(`reauth` after a key revocation, a logout or a password change: a socket of that account on any
host re-checks its credentials now instead of within `EVENTS_REAUTH_S`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

logger = logging.getLogger(__name__)

COALESCE_S = 0.01  # a publisher sends what was rung in this window as one message
RETRY_S = 1.0  # after a Redis error, wait this long before the next try (doubling, to RETRY_MAX_S)
RETRY_MAX_S = 30.0

Listener = Callable[[set[int], set[int]], None]  # (accounts with new rows, accounts to re-check)


class RedisBus:
    """The doorbell of one worker process: `ring` from request threads, `listen` from the hub.
    Both threads start on first use (after gunicorn has forked) and are daemons."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self._lock = threading.Lock()
        self._accounts: set[int] = set()
        self._reauth: set[int] = set()
        self._rung = threading.Event()
        self._publisher: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._listeners: list[Listener] = []
        self.published = 0  # messages sent (tests and logs)

    def _client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=2, health_check_interval=30)

    # -- publishing ---------------------------------------------------------------------------
    def ring(self, account_id: int, reauth: bool = False) -> None:
        """Tell every host that `account_id` has new rows (or must re-check its sockets)."""
        with self._lock:
            (self._reauth if reauth else self._accounts).add(account_id)
            if self._publisher is None or not self._publisher.is_alive():
                self._publisher = threading.Thread(
                    target=self._publish_loop, name="inferbase-events-pub", daemon=True
                )
                self._publisher.start()
        self._rung.set()

    def _take(self) -> tuple[set[int], set[int]]:
        with self._lock:
            accounts, reauth = self._accounts, self._reauth
            self._accounts, self._reauth = set(), set()
        return accounts, reauth

    def _publish_loop(self) -> None:
        client = self._client()
        while True:
            self._rung.wait()
            time.sleep(COALESCE_S)
            self._rung.clear()
            accounts, reauth = self._take()
            if not accounts and not reauth:
                continue
            message = json.dumps({"accounts": sorted(accounts), "reauth": sorted(reauth)})
            try:
                client.publish(self.channel, message)
                self.published += 1
            except Exception as e:  # Redis down: the safety poll delivers; never fail a request
                logger.warning("events bus: publish failed (the poll will deliver): %s", e)
                time.sleep(RETRY_S)

    # -- listening ----------------------------------------------------------------------------
    def listen(self, listener: Listener) -> None:
        """Call `listener(accounts, reauth)` for every message (from the listener thread); on a
        reconnect it is called with `({-1}, set())`: messages may have been missed, poll now."""
        with self._lock:
            self._listeners.append(listener)
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(
                    target=self._listen_loop, name="inferbase-events-sub", daemon=True
                )
                self._listener.start()

    def _deliver(self, accounts: set[int], reauth: set[int]) -> None:
        for listener in list(self._listeners):
            try:
                listener(accounts, reauth)
            except Exception:
                logger.exception("events bus: listener failed")

    def _listen_loop(self) -> None:
        wait = RETRY_S
        while True:
            try:
                pubsub = self._client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self._deliver({-1}, set())  # (re)subscribed: catch up on what was missed
                wait = RETRY_S
                for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        body = json.loads(message["data"])
                        accounts = {int(a) for a in body.get("accounts", ())}
                        reauth = {int(a) for a in body.get("reauth", ())}
                    except (ValueError, TypeError, AttributeError):
                        logger.warning("events bus: ignored a malformed message")
                        continue
                    self._deliver(accounts, reauth)
            except Exception as e:
                logger.warning("events bus: no subscription (%s); retrying in %.0f s", e, wait)
                time.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_S)


def from_config(app: Flask) -> RedisBus | None:
    """The Redis bus when `EVENTS_BUS` is `redis`, or `auto` with `REDIS_URL` set; else None (the
    hub polls the database)."""
    choice = str(app.config.get("EVENTS_BUS") or "auto")
    url = app.config.get("REDIS_URL")
    if choice not in ("auto", "poll", "redis"):
        raise ValueError(f"INFERBASE_EVENTS_BUS={choice!r}: use auto, poll or redis")
    if choice == "poll" or (choice == "auto" and not url):
        return None
    if not url:
        raise ValueError("INFERBASE_EVENTS_BUS=redis needs INFERBASE_REDIS_URL")
    prefix = app.config.get("REDIS_PREFIX") or "inferbase"
    return RedisBus(str(url), f"{prefix}:events")
