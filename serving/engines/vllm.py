"""`VLLMEngines`: the `Engines` contract over vLLM OpenAI-compatible servers.

Pooled httpx client with connect/read timeouts; several replicas per model picked by least
outstanding requests; a replica whose connection fails is taken out (and the request retried on
another, since nothing reached the engine); the health monitor brings it back when /health answers
again. Streams are read by a small reader thread so the caller gets each chunk as soon as it arrives
and a `None` keep-alive tick whenever the engine has been silent for `keepalive_s`. Closing the
generator shuts the upstream socket, which makes vLLM abort the request.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from serving.engines.base import CatalogModel, EngineError, EngineStats, Health
from serving.engines.errors import error_from_body, error_from_frame
from serving.engines.monitor import HealthMonitor
from serving.engines.replicas import NoReplica, Replica, ReplicaPool

logger = logging.getLogger(__name__)

_DONE = object()
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
LOADING_RETRY_AFTER_S = 10


class _Process:
    """Everything that must not cross a fork: client, pool lock, monitor thread."""

    def __init__(self, owner: VLLMEngines) -> None:
        self.pid = os.getpid()
        self.pool = ReplicaPool({m.id: list(m.replicas) for m in owner._models.values()})
        self.client = httpx.Client(
            timeout=httpx.Timeout(owner.read_timeout_s, connect=owner.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=owner.max_connections,
                max_keepalive_connections=owner.max_connections,
            ),
        )
        self.monitor: HealthMonitor | None = None
        if owner.monitor_interval_s is not None:
            self.monitor = HealthMonitor(
                self.pool,
                {m.id: m.served_name or m.id for m in owner._models.values()},
                interval_s=owner.monitor_interval_s,
                process_alive=owner.process_alive,
            )
            self.monitor.start()


class VLLMEngines:
    """Engines backed by vLLM servers, built from catalog models (their `replicas` URLs).

    `monitor_interval_s=None` disables the health monitor (replicas are then used until a request
    fails). `process_alive(url)` tells the monitor whether a local engine process for that URL is
    still starting (so a closed port reads as `loading`, not `unavailable`).
    """

    def __init__(
        self,
        models: Iterable[CatalogModel],
        *,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 300.0,
        keepalive_s: float = 15.0,
        monitor_interval_s: float | None = 2.0,
        first_probe_wait_s: float = 3.0,
        max_connections: int = 512,
        process_alive: Callable[[str], bool] | None = None,
    ) -> None:
        self._models = {m.id: m for m in models}
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.keepalive_s = keepalive_s
        self.monitor_interval_s = monitor_interval_s
        self.first_probe_wait_s = first_probe_wait_s
        self.max_connections = max_connections
        self.process_alive = process_alive
        self._init_lock = threading.Lock()
        self._proc: _Process | None = None

    # -- per-process state -------------------------------------------------------------------
    def _p(self) -> _Process:
        p = self._proc
        if p is not None and p.pid == os.getpid():
            return p
        with self._init_lock:
            if self._proc is None or self._proc.pid != os.getpid():
                self._proc = _Process(self)  # a fork inherits no threads: start afresh
            return self._proc

    def close(self) -> None:
        p = self._proc
        if p is not None and p.pid == os.getpid():
            if p.monitor:
                p.monitor.stop()
            p.client.close()
        self._proc = None

    # -- catalog -----------------------------------------------------------------------------
    def models(self) -> list[CatalogModel]:
        return list(self._models.values())

    def get(self, model_id: str) -> CatalogModel | None:
        return self._models.get(model_id)

    def _model(self, model_id: str) -> CatalogModel:
        m = self._models.get(model_id)
        if m is None:
            raise EngineError(
                f"The model `{model_id}` does not exist.",
                status=404,
                type="invalid_request_error",
                code="model_not_found",
                param="model",
            )
        return m

    # -- health and stats --------------------------------------------------------------------
    def _settled(self) -> _Process:
        p = self._p()
        if p.monitor is not None:
            p.monitor.first_pass.wait(self.first_probe_wait_s)
        return p

    def health(self, model_id: str) -> Health:
        self._model(model_id)
        reps = self._settled().pool.of(model_id)
        states = {r.state for r in reps}
        if "ready" in states or ("unknown" in states and self.monitor_interval_s is None):
            return "ready"
        if "loading" in states or "unknown" in states:
            return "loading"
        return "unavailable"

    def stats(self, model_id: str) -> EngineStats | None:
        if model_id not in self._models:
            return None
        ready = [r for r in self._settled().pool.of(model_id) if r.state == "ready"]
        if not ready:
            return None

        def mean(vals: list[float | None]) -> float | None:
            got = [v for v in vals if v is not None]
            return sum(got) / len(got) if got else None

        queue_depth = sum(
            (r.running or 0.0) + (r.waiting or 0.0) if r.running is not None else r.outstanding
            for r in ready
        )
        return EngineStats(
            queue_depth=float(queue_depth),
            ttft_ms=mean([r.ttft_ms for r in ready]),
            tpot_ms=mean([r.tpot_ms for r in ready]),
            kv_cache_usage=mean([r.kv_cache_usage for r in ready]),
        )

    def replicas(self, model_id: str) -> list[dict[str, Any]]:
        """Per-replica state (for `engines status`, dashboards and tests)."""
        return [r.snapshot() for r in self._p().pool.of(model_id)]

    # -- requests ----------------------------------------------------------------------------
    def _acquire(self, p: _Process, model_id: str, tried: set[int]) -> Replica:
        try:
            return p.pool.acquire(model_id, tried)
        except NoReplica as e:
            if e.loading:
                raise EngineError(
                    f"The model `{model_id}` is loading; retry shortly.",
                    code="model_loading",
                    retry_after=LOADING_RETRY_AFTER_S,
                ) from None
            raise EngineError(
                f"No engine replica of `{model_id}` is available.", code="engine_unavailable"
            ) from None

    def _send(
        self, model_id: str, body: dict[str, Any], stream: bool
    ) -> tuple[Replica, httpx.Response]:
        """POST to a replica; retries on another replica while connections fail. The returned
        replica is acquired (the caller releases it)."""
        self._model(model_id)
        p = self._p()
        tried: set[int] = set()
        content = json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        while True:
            r = self._acquire(p, model_id, tried)
            try:
                req = p.client.build_request(
                    "POST", r.url + "/v1/chat/completions", content=content, headers=headers
                )
                resp = p.client.send(req, stream=stream)
            except _CONNECT_ERRORS as e:
                p.pool.release(r)
                p.pool.eject(r, f"connect failed: {type(e).__name__}")
                logger.warning("replica %s of %s refused a connection: %s", r.url, model_id, e)
                tried.add(id(r))
                continue
            except httpx.HTTPError as e:
                p.pool.release(r)
                p.pool.eject(r, f"request failed: {type(e).__name__}")
                raise EngineError(f"engine for {model_id} failed: {type(e).__name__}") from e
            if resp.status_code < 400:
                return r, resp
            try:
                data = resp.read()
            except httpx.HTTPError:
                data = b""
            finally:
                resp.close()
                p.pool.release(r)
            if resp.status_code >= 500:
                p.pool.eject(r, f"HTTP {resp.status_code}")
                if resp.status_code == 503:  # not serving yet/anymore: another replica may be
                    tried.add(id(r))
                    if any(id(x) not in tried for x in p.pool.of(model_id)):
                        continue
            raise error_from_body(resp.status_code, data, model_id)

    def complete(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        r, resp = self._send(model_id, body, stream=False)
        try:
            return resp.json()  # type: ignore[no-any-return]
        except ValueError as e:
            self._p().pool.eject(r, "invalid JSON")
            raise EngineError(f"engine for {model_id} sent invalid JSON") from e
        finally:
            self._p().pool.release(r)

    def stream(self, model_id: str, body: dict[str, Any]) -> Iterator[dict[str, Any] | None]:
        """A generator: nothing is sent until the first `next()`, which raises EngineError when
        the request fails before the first chunk (so a stream that is never iterated holds no
        replica and no connection)."""
        r, resp = self._send(model_id, body, stream=True)
        yield from self._relay(model_id, r, resp)

    def _relay(
        self, model_id: str, r: Replica, resp: httpx.Response
    ) -> Iterator[dict[str, Any] | None]:
        p = self._p()
        reader = _Reader(resp)
        done = False
        try:
            while True:
                try:
                    item = reader.q.get(timeout=self.keepalive_s)
                except queue.Empty:
                    yield None
                    continue
                if item is _DONE:
                    done = True
                    return
                if isinstance(item, BaseException):
                    p.pool.eject(r, f"stream broke: {type(item).__name__}")
                    raise EngineError(
                        f"engine for {model_id} failed mid-stream: {type(item).__name__}"
                    ) from item
                err = error_from_frame(item, model_id)
                if err is not None:
                    raise err
                yield item
        finally:
            if not done:
                reader.abort()  # unblocks the reader and tells vLLM the client is gone
            p.pool.release(r)


class _Reader:
    """Reads an upstream SSE response on its own thread into a queue of dicts, then `_DONE` (or an
    exception)."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False
        self._finished = False
        threading.Thread(target=self._run, name="engines-stream", daemon=True).start()

    def _run(self) -> None:
        try:
            for line in self.resp.iter_lines():
                if not line.startswith("data:"):
                    continue  # comments, event names, blank separators
                payload = line[5:].strip()
                if payload == "[DONE]":
                    self.q.put(_DONE)
                    return
                self.q.put(json.loads(payload))
            self.q.put(httpx.RemoteProtocolError("stream ended without [DONE]"))
        except Exception as e:  # handed to the consumer, which raises EngineError
            self.q.put(e)
        finally:
            with self._lock:
                self._finished = True
            self.resp.close()

    def abort(self) -> None:
        """Shut the socket down (wakes a blocked read; vLLM sees the disconnect and aborts)."""
        with self._lock:
            if self._finished or self._stopped:
                return
            self._stopped = True
            stream = self.resp.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
