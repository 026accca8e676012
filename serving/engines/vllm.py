"""`VLLMEngines`: the `Engines` contract over vLLM OpenAI-compatible servers.

One keep-alive connection pool per replica (`serving.engines.wire`, a lean HTTP/1.1 client: urllib3
or httpcore would add 14-22% to the gateway's CPU per request; numbers in its docstring), with
connect/read timeouts. Several replicas per model, picked by least outstanding requests; a replica
whose connection fails is taken out (and the request retried on another, since nothing reached the
engine); the health monitor brings it back when /health answers again. Streams are read in the
caller's thread as chunks arrive, with a `None` keep-alive tick whenever the engine has been silent
for `keepalive_s`; closing the generator shuts the upstream socket, which makes vLLM abort the
request.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import orjson

from serving.engines.base import CatalogModel, EngineError, EngineStats, Health
from serving.engines.errors import error_from_body, error_from_frame
from serving.engines.monitor import HealthMonitor
from serving.engines.replicas import NoReplica, Replica, ReplicaPool
from serving.engines.wire import Answer, ConnectFailed, Pool, WireError

logger = logging.getLogger(__name__)

LOADING_RETRY_AFTER_S = 10
_PATH = "/v1/chat/completions"


class _Process:
    """Everything that must not cross a fork: client, pool lock, monitor thread."""

    def __init__(self, owner: VLLMEngines) -> None:
        self.pid = os.getpid()
        self.pool = ReplicaPool({m.id: list(m.replicas) for m in owner._models.values()})
        self.http = {
            url: Pool(url, owner.connect_timeout_s, owner.read_timeout_s, owner.max_connections)
            for m in owner._models.values()
            for url in m.replicas
        }
        self.monitor: HealthMonitor | None = None
        if owner.monitor_interval_s is not None:
            self.monitor = HealthMonitor(
                self.pool,
                {m.id: m.served_name or m.id for m in owner._models.values()},
                interval_s=owner.monitor_interval_s,
                process_alive=owner.process_alive,
            )
            self.monitor.start()


class Stream:
    """The chunks of one stream (an iterator, closed like a generator). `replica` is the index of
    the replica serving it in the model's catalog `replicas` (never its URL), known once the first
    chunk was asked for: the gateway sends it as the `X-Inferbase-Replica` header."""

    __slots__ = ("replica", "_chunks")

    def __init__(self, owner: VLLMEngines, model_id: str, body: dict[str, Any]) -> None:
        self.replica: int | None = None
        self._chunks = owner._stream(model_id, body, self)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> dict[str, Any] | None:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()


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
            for http in p.http.values():
                http.close()
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

    def _send(self, model_id: str, body: dict[str, Any], stream: bool) -> tuple[Replica, Answer]:
        """POST to a replica; retries on another replica while connections fail. The returned
        replica is acquired (the caller releases it); the answer's body is unread."""
        self._model(model_id)
        p = self._p()
        tried: set[int] = set()
        content = orjson.dumps(body)
        accept = "text/event-stream" if stream else "application/json"
        while True:
            r = self._acquire(p, model_id, tried)
            try:
                resp = p.http[r.url].post(_PATH, content, accept)
            except ConnectFailed as e:  # nothing was sent
                p.pool.release(r)
                p.pool.eject(r, "connect failed")
                logger.warning("replica %s of %s refused a connection: %s", r.url, model_id, e)
                tried.add(id(r))
                continue
            except WireError as e:
                p.pool.release(r)
                p.pool.eject(r, f"request failed: {e}")
                raise EngineError(f"engine for {model_id} failed: {e}") from e
            if resp.status < 400:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("engine model=%s replica=%s stream=%s", model_id, r.url, stream)
                return r, resp
            try:
                data = resp.read()
            except WireError:
                data = b""
                resp.close()
            finally:
                p.pool.release(r)
            if resp.status >= 500:
                p.pool.eject(r, f"HTTP {resp.status}")
                if resp.status == 503:  # not serving yet/anymore: another replica may be
                    tried.add(id(r))
                    if any(id(x) not in tried for x in p.pool.of(model_id)):
                        continue
            raise error_from_body(resp.status, data, model_id)

    def complete(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        r, resp = self._send(model_id, body, stream=False)
        p = self._p()
        try:
            out = orjson.loads(resp.read())
            if not isinstance(out, dict):
                raise ValueError("not a JSON object")
            return out
        except WireError as e:
            resp.close()
            p.pool.eject(r, f"read failed: {e}")
            raise EngineError(f"engine for {model_id} failed: {e}") from e
        except ValueError as e:
            p.pool.eject(r, "invalid JSON")
            raise EngineError(f"engine for {model_id} sent invalid JSON") from e
        finally:
            p.pool.release(r)

    def stream(self, model_id: str, body: dict[str, Any]) -> Stream:
        """The stream's chunks: nothing is sent until the first `next()`, which raises EngineError
        when the request fails before the first chunk (so a stream that is never iterated holds
        no replica and no connection)."""
        return Stream(self, model_id, body)

    def _stream(
        self, model_id: str, body: dict[str, Any], out: Stream
    ) -> Generator[dict[str, Any] | None]:
        r, resp = self._send(model_id, body, stream=True)
        out.replica = r.index
        yield from self._relay(model_id, r, resp)

    def _relay(self, model_id: str, r: Replica, resp: Answer) -> Iterator[dict[str, Any] | None]:
        """SSE events as dicts, split on blank lines as bytes arrive; None while the engine is
        silent; ends at `data: [DONE]`."""
        p = self._p()
        buf = b""
        it = resp.iter_raw(self.keepalive_s)
        try:
            for data in it:
                if data is None:
                    yield None
                    continue
                buf += data
                while True:
                    end = buf.find(b"\n\n")
                    if end < 0:
                        break
                    event, buf = buf[:end], buf[end + 2 :]
                    for line in event.replace(b"\r", b"").split(b"\n"):
                        if not line.startswith(b"data:"):
                            continue  # comments, event names
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            for rest in it:  # the body's end (chunked terminator): reusable
                                if rest is None:
                                    break  # the engine holds the stream open: close it
                            return
                        try:
                            item = orjson.loads(payload)
                        except ValueError as e:
                            raise WireError("invalid JSON in the stream") from e
                        err = error_from_frame(item, model_id)
                        if err is not None:
                            raise err
                        yield item
            raise WireError("stream ended without [DONE]")
        except WireError as e:
            p.pool.eject(r, f"stream broke: {e}")
            raise EngineError(f"engine for {model_id} failed mid-stream: {e}") from e
        finally:
            resp.close()  # a no-op when the body was read to its end; else aborts the request
            p.pool.release(r)
