"""Background health monitor: polls each replica's /health, /v1/models and /metrics.

One daemon thread per `VLLMEngines` (per process: it is started lazily, so gunicorn workers each get
their own after the fork). A replica is `ready` when /health answers 200 and /v1/models lists the
served name; `loading` while its port is closed but its local process is alive, or while it answers
503; `down` otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from serving.engines.replicas import Replica, ReplicaPool

logger = logging.getLogger(__name__)

FAILURES_TO_EJECT = 3  # probes missed in a row before a ready replica is taken out
TTFT = ("vllm:time_to_first_token_seconds",)
TPOT = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")


def parse_metrics(text: str, r: Replica) -> None:
    """Update the replica's live figures from a Prometheus text page (vLLM /metrics).

    Gauges are summed (running, waiting) or averaged (KV cache) over label sets. Latencies are the
    mean of the histogram observations since the previous poll; with no new observation the last
    figure is kept."""
    gauges: dict[str, list[float]] = {}
    histos: dict[str, tuple[float, float]] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name in ("vllm:num_requests_running", "vllm:num_requests_waiting") or (
            fam.name == "vllm:kv_cache_usage_perc"
        ):
            gauges[fam.name] = [s.value for s in fam.samples]
        elif fam.name in TTFT + TPOT:
            total = sum(s.value for s in fam.samples if s.name.endswith("_sum"))
            count = sum(s.value for s in fam.samples if s.name.endswith("_count"))
            histos[fam.name] = (total, count)
    if "vllm:num_requests_running" in gauges:
        r.running = sum(gauges["vllm:num_requests_running"])
    if "vllm:num_requests_waiting" in gauges:
        r.waiting = sum(gauges["vllm:num_requests_waiting"])
    kv = gauges.get("vllm:kv_cache_usage_perc")
    if kv:
        r.kv_cache_usage = sum(kv) / len(kv)
    for names, attr in ((TTFT, "ttft_ms"), (TPOT, "tpot_ms")):
        for name in names:
            if name not in histos:
                continue
            total, count = histos[name]
            prev_total, prev_count = r.histos.get(name, (0.0, 0.0))
            if count < prev_count:  # the server restarted: counters reset
                prev_total, prev_count = 0.0, 0.0
            if count > prev_count:
                setattr(r, attr, 1000.0 * (total - prev_total) / (count - prev_count))
            r.histos[name] = (total, count)
            break


class HealthMonitor:
    def __init__(
        self,
        pool: ReplicaPool,
        served_names: dict[str, str],
        *,
        interval_s: float,
        process_alive: Callable[[str], bool] | None,
        probe_timeout_s: float = 2.0,
    ) -> None:
        self.pool = pool
        self.served_names = served_names
        self.interval_s = interval_s
        self.process_alive = process_alive
        self.first_pass = threading.Event()
        self._stop = threading.Event()
        self._client = httpx.Client(
            timeout=httpx.Timeout(probe_timeout_s, connect=min(0.5, probe_timeout_s))
        )
        self._thread = threading.Thread(target=self._run, name="engines-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self.first_pass.set()
            self._stop.wait(self.interval_s)

    def poll_once(self) -> None:
        for r in list(self.pool.all()):
            if self._stop.is_set():
                return
            try:
                self._probe(r)
            except Exception:  # never let one replica kill the monitor
                logger.exception("health probe of %s failed", r.url)

    def _not_listening(self, r: Replica, reason: str) -> None:
        if self.process_alive is not None and self.process_alive(r.url):
            self._set(r, "loading", "starting: port not open yet")
        else:
            self._set(r, "down", reason)

    def _set(self, r: Replica, state: str, reason: str | None = None) -> None:
        old = r.state
        if self.pool.set_state(r, state, reason):  # type: ignore[arg-type]
            level = logging.INFO if state in ("ready", "loading") else logging.WARNING
            logger.log(level, "replica %s of %s: %s -> %s (%s)", r.url, r.model_id, old, state,
                       reason or "ok")  # fmt: skip

    def _probe_failed(self, r: Replica, reason: str) -> None:
        """A probe timed out or broke: a busy engine on a loaded machine can miss one, so a ready
        replica is taken out only after `FAILURES_TO_EJECT` misses in a row (a refused
        connection, a failed request and a broken stream still take it out at once)."""
        r.probe_failures += 1
        if r.state != "ready" or r.probe_failures >= FAILURES_TO_EJECT:
            self._set(r, "down", reason)
        else:
            logger.info("replica %s of %s: %s (%d in a row)", r.url, r.model_id, reason,
                        r.probe_failures)  # fmt: skip

    def _probe(self, r: Replica) -> None:
        try:
            resp = self._client.get(r.url + "/health")
        except httpx.ConnectError:
            r.probe_failures = 0
            self._not_listening(r, "connection refused")
            return
        except httpx.HTTPError as e:
            self._probe_failed(r, f"/health: {type(e).__name__}")
            return
        if resp.status_code == 503:
            self._set(r, "loading", "starting: /health answered 503")
            return
        if resp.status_code != 200:
            self._set(r, "down", f"/health answered {resp.status_code}")
            return
        try:
            if r.state != "ready":
                models = self._client.get(r.url + "/v1/models").json()
                ids = {m.get("id") for m in models.get("data", [])}
                want = self.served_names[r.model_id]
                if want not in ids:
                    self._set(r, "down", f"serves {sorted(ids)}, not {want!r}")
                    return
        except (httpx.HTTPError, ValueError) as e:
            self._probe_failed(r, f"probe failed: {type(e).__name__}")
            return
        r.probe_failures = 0
        self._set(r, "ready")
        try:  # live figures only: a slow /metrics page does not make the replica unhealthy
            metrics = self._client.get(r.url + "/metrics")
            if metrics.status_code == 200:
                parse_metrics(metrics.text, r)
        except (httpx.HTTPError, ValueError) as e:
            logger.info("metrics of %s unavailable: %s", r.url, type(e).__name__)
