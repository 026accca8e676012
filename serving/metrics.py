"""Prometheus metrics: `GET /metrics` with the official client (`prometheus_client`), in its
multiprocess mode under gunicorn.

What is counted (the full table with labels: docs/deploy.md, "Metrics"):

- on every request (`serving.front.Front`): `inferbase_http_requests_total` by route (the URL
  rule, `unmatched` when none matched), method and status; `inferbase_open_streams` (live sum);
- at each chat settlement (`serving.api.chat.Call.settle`): `inferbase_chat_completions_total`
  (model, stream, outcome), `inferbase_added_latency_seconds` (the gateway's own time with the
  engine's wait taken out: the whole request for JSON answers, the time to the first token for
  streams), `inferbase_time_to_first_token_seconds` (streams, by model), `inferbase_tokens_total`
  (model, prompt|completion), `inferbase_credits_charged_micros_total` (model);
- for `model: "auto"` (the chat view): `inferbase_routing_decisions_total` (task, model, optimize);
- when scraped: `inferbase_engine_replicas` (model, state), `inferbase_engine_up`,
  `inferbase_engine_queue_depth`, `inferbase_engine_kv_cache_usage` (model) and
  `inferbase_router_info` (name, version, router_version, trained).

Multiprocess mode: gunicorn's workers each write their counters and histograms to memory-mapped
files in `PROMETHEUS_MULTIPROC_DIR`, and whichever worker answers the scrape sums every worker's
files (`MultiProcessCollector`), so one scrape sees the whole server. `serving.gconf` sets the
directory (a fresh temporary one unless the operator names one), empties it when the server
starts and calls `mark_process_dead` when a worker exits, so a dead worker's open streams stop
counting while its counters are kept. The variable must be set before `prometheus_client` is first
imported, which gunicorn's config module does in the master before any worker starts. Without it
(one process: the Flask test client, `flask run`) the same metrics live in this process.

Engine health, queue depth and the router version are the answering worker's live view (every
worker polls the same engines and the same registry alias), read when the scrape comes, not
written on the request path.

`/metrics` is on the API port and needs `Authorization: Bearer <INFERBASE_METRICS_TOKEN>`; with no
token set it is a 404. A separate port was the other choice: the stock way to serve one from
gunicorn is a thread in the master, which cannot see the workers' engine and router state, and a
port per worker would collide. `INFERBASE_METRICS=false` turns the metrics off altogether.

Cost on the request path: each label set's child is looked up once per process and cached here,
so a chat request does about ten locked writes to an mmap (`benchmarks/gateway.py --libraries
--parts metrics` prints the CPU per request with metrics on and off).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from serving.engines.base import Engines
from serving.errors import ApiError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):  # outside gunicorn (which makes it) the directory may not exist
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)
if os.environ.get(MULTIPROC_ENV) and not getattr(values.ValueClass, "_multiprocess", False):
    # prometheus_client picks its value class when first imported; if something imported it
    # before the directory was set (gunicorn's master sets it in `on_starting`), pick again
    # before the first metric is made
    values.ValueClass = values.MultiProcessValue()
disable_created_metrics()  # no `_created` series: multiprocess mode has none either
REGISTRY = CollectorRegistry()  # this process's metrics (summed over workers in multiprocess mode)

REQUESTS = Counter(
    "inferbase_http_requests",
    "HTTP requests answered, by URL rule, method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
COMPLETIONS = Counter(
    "inferbase_chat_completions",
    "Chat completions settled, by served model, streaming and outcome",
    ["model", "stream", "outcome"],
    registry=REGISTRY,
)
ADDED = Histogram(
    "inferbase_added_latency_seconds",
    "Time the gateway adds to a chat completion (the engine's wait excluded): the whole request "
    "for JSON answers, the time to the first token for streams",
    ["stream"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
TTFT = Histogram(
    "inferbase_time_to_first_token_seconds",
    "Time from the request's arrival to its first streamed token, by served model",
    ["model"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
TOKENS = Counter(
    "inferbase_tokens",
    "Tokens billed, by served model and kind (prompt, completion)",
    ["model", "kind"],
    registry=REGISTRY,
)
CREDITS = Counter(
    "inferbase_credits_charged_micros",
    "Micro-credits charged (1 credit = 1,000,000), by served model",
    ["model"],
    registry=REGISTRY,
)
ROUTED = Counter(
    "inferbase_routing_decisions",
    "Routing decisions for model 'auto', by predicted task, chosen model and optimize mode",
    ["task", "model", "optimize"],
    registry=REGISTRY,
)
OPEN_STREAMS = Gauge(
    "inferbase_open_streams",
    "Streamed answers open now",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class Recorder:
    """The request path's handle on the metrics (`app.extensions["metrics"]`, absent when off)."""

    def __init__(self) -> None:
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:  # a race only creates the same child twice
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, route: str, method: str, status: int) -> None:
        self._child(REQUESTS, route, method, str(status)).inc()

    def routed(self, task: str, model: str, optimize: str) -> None:
        self._child(ROUTED, task, model, optimize).inc()

    def settled(
        self,
        model: str,
        stream: bool,
        outcome: str,
        prompt_tokens: int,
        completion_tokens: int,
        charged_micros: int,
        added_s: float | None,
        ttft_s: float | None,
    ) -> None:
        kind = "true" if stream else "false"
        self._child(COMPLETIONS, model, kind, outcome).inc()
        if prompt_tokens:
            self._child(TOKENS, model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self._child(TOKENS, model, "completion").inc(completion_tokens)
        if charged_micros:
            self._child(CREDITS, model).inc(charged_micros)
        if added_s is not None:
            self._child(ADDED, kind).observe(max(added_s, 0.0))
        if stream and ttft_s is not None:
            self._child(TTFT, model).observe(ttft_s)

    @staticmethod
    def stream_opened() -> None:
        OPEN_STREAMS.inc()

    @staticmethod
    def stream_closed() -> None:
        OPEN_STREAMS.dec()


class LiveCollector(Collector):
    """Engine health, queue depth and the router version, read from this worker when scraped."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engines: Engines | None = self.app.extensions.get("engines")
        replicas = GaugeMetricFamily(
            "inferbase_engine_replicas", "Engine replicas by state", labels=["model", "state"]
        )
        up = GaugeMetricFamily(
            "inferbase_engine_up", "1 when the model has a replica that can serve", labels=["model"]
        )
        queue = GaugeMetricFamily(
            "inferbase_engine_queue_depth",
            "Requests running or waiting on the model's ready replicas",
            labels=["model"],
        )
        kv = GaugeMetricFamily(
            "inferbase_engine_kv_cache_usage",
            "Mean KV-cache usage (0-1) of the model's ready replicas",
            labels=["model"],
        )
        if engines is not None:
            for m in engines.models():
                health = engines.health(m.id)
                up.add_metric([m.id], 1.0 if health == "ready" else 0.0)
                per_replica = getattr(engines, "replicas", None)
                if per_replica is not None:
                    states: dict[str, int] = {}
                    for r in per_replica(m.id):
                        states[r["state"]] = states.get(r["state"], 0) + 1
                else:  # an Engines without replica detail: its health as one replica
                    states = {"down" if health == "unavailable" else health: 1}
                for state in ("ready", "loading", "down", "unknown"):
                    replicas.add_metric([m.id, state], float(states.get(state, 0)))
                stats = engines.stats(m.id)
                if stats is not None:
                    queue.add_metric([m.id], float(stats.queue_depth))
                    if stats.kv_cache_usage is not None:
                        kv.add_metric([m.id], float(stats.kv_cache_usage))
        yield from (replicas, up, queue, kv)
        router = self.app.extensions.get("router")
        info = router.info() if router is not None and hasattr(router, "info") else None
        if info is not None:
            fam = GaugeMetricFamily(
                "inferbase_router_info",
                "The router serving model 'auto' (value 1); version is the registry version",
                labels=["name", "version", "router_version", "trained"],
            )
            fam.add_metric(
                [
                    str(info.get("name") or ""),
                    str(info.get("version") or ""),
                    str(info.get("router_version") or ""),
                    "true" if info.get("trained") else "false",
                ],
                1.0,
            )
            yield fam


def exposition(app: Flask) -> bytes:
    """The text exposition of every metric: all workers' (multiprocess) plus this worker's live
    view."""
    live = CollectorRegistry()
    live.register(LiveCollector(app))
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY) + generate_latest(live)
    summed = CollectorRegistry()
    multiprocess.MultiProcessCollector(summed, path=path)
    return generate_latest(summed) + generate_latest(live)


def scrape() -> Response:
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        raise ApiError(
            404,
            "The metrics endpoint is off: set INFERBASE_METRICS_TOKEN to serve it "
            "(docs/deploy.md).",
            code="metrics_off",
        )
    sent = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(sent, f"Bearer {token}".encode()):
        raise ApiError(
            401,
            "GET /metrics needs 'Authorization: Bearer <INFERBASE_METRICS_TOKEN>'.",
            code="invalid_metrics_token",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(exposition(current_app), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Metrics on (`METRICS`, default true): the recorder the request path uses, and `/metrics`."""
    if not app.config.get("METRICS", True):
        return
    app.extensions["metrics"] = Recorder()
    app.add_url_rule("/metrics", "metrics", scrape, methods=["GET"])
