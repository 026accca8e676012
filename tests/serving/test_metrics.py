"""Prometheus `/metrics` (serving/metrics.py): what a request adds to each metric, the bearer token,
and, under real gunicorn, the multiprocess mode: every worker's counts in one scrape, and a dead
worker's open streams no longer counted (`mark_process_dead` in `serving.gconf.child_exit`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.testing import server as srv
from serving.testing.fakes import FakeEngines, FakeRouter
from tests.serving.conftest import ApiActions, build_app

URL = "/api/v1/inference/chat/completions"
TOKEN = "scrape-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(got: dict[Any, float], metric: str, **labels: str) -> float:
    return got.get((metric, frozenset(labels.items())), 0.0)


class RouterWithInfo(FakeRouter):
    def info(self) -> dict[str, Any]:
        return {"name": "inferroute", "version": "7", "router_version": "r7", "trained": True}


@pytest.fixture
def api(sqlite_url: str, tmp_path: Path) -> Iterator[ApiActions]:
    engines = FakeEngines(health_={"local/tiny-b": "loading"})
    app = build_app(sqlite_url, tmp_path, engines, RouterWithInfo(), METRICS_TOKEN=TOKEN)
    yield ApiActions(app, app.test_client())
    app.extensions["db"].dispose()


def scrape(api: ApiActions) -> dict[Any, float]:
    rv = api.client.get("/metrics", headers=AUTH)
    assert rv.status_code == 200 and rv.headers["Content-Type"].startswith("text/plain")
    return samples(rv.get_data(as_text=True))


def test_a_chat_request_shows_in_every_metric(api):
    t = api.tenant(credits_micros=50_000_000)
    before = scrape(api)
    rv = api.chat(t, model="auto", max_tokens=8)
    assert rv.status_code == 200
    usage = rv.get_json()["usage"]
    rv = api.chat(t, model="local/tiny-a", stream=True, max_tokens=8)
    assert rv.status_code == 200
    rv.get_data()
    rv.close()
    assert api.chat(api.tenant(credits_micros=1)).status_code == 402
    assert api.client.get("/no/such/page").status_code == 404
    after = scrape(api)

    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    req = "inferbase_http_requests_total"
    assert delta(req, route=URL, method="POST", status="200") == 2
    assert delta(req, route=URL, method="POST", status="402") == 1
    assert delta(req, route="unmatched", method="GET", status="404") == 1
    assert delta(req, route="/metrics", method="GET", status="200") == 1  # the first scrape
    model = "local/tiny-a"
    done = "inferbase_chat_completions_total"
    assert delta(done, model=model, stream="false", outcome="success") == 1
    assert delta(done, model=model, stream="true", outcome="success") == 1
    prompt = delta("inferbase_tokens_total", model=model, kind="prompt")
    assert prompt >= usage["prompt_tokens"] > 0
    assert delta("inferbase_tokens_total", model=model, kind="completion") == 16  # 8 + 8
    rows = api.app.test_client().get("/api/v1/inference/usage", headers=t.headers).get_json()
    billed = sum(r["cost_micros"] for r in rows["data"])
    assert delta("inferbase_credits_charged_micros_total", model=model) == billed > 0
    routed = "inferbase_routing_decisions_total"
    assert delta(routed, task="general_qa", model=model, optimize="balanced") == 1
    for stream in ("false", "true"):
        assert delta("inferbase_added_latency_seconds_count", stream=stream) == 1
        assert delta("inferbase_added_latency_seconds_sum", stream=stream) > 0
    assert delta("inferbase_time_to_first_token_seconds_count", model=model) == 1
    assert value(after, "inferbase_open_streams") == 0
    # engine health and queue depth, and the router, as this process sees them
    assert value(after, "inferbase_engine_up", model=model) == 1
    assert value(after, "inferbase_engine_up", model="local/tiny-b") == 0
    assert value(after, "inferbase_engine_replicas", model="local/tiny-b", state="loading") == 1
    assert value(after, "inferbase_engine_queue_depth", model=model) == 0
    info = {"name": "inferroute", "version": "7", "router_version": "r7", "trained": "true"}
    assert value(after, "inferbase_router_info", **info) == 1


def test_metrics_need_the_token(api, app_without_token):
    rv = api.client.get("/metrics")
    assert rv.status_code == 401 and rv.headers["WWW-Authenticate"].startswith("Bearer")
    assert rv.get_json()["error"]["code"] == "invalid_metrics_token"
    rv = api.client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert rv.status_code == 401
    rv = app_without_token.test_client().get("/metrics", headers=AUTH)
    assert rv.status_code == 404 and rv.get_json()["error"]["code"] == "metrics_off"


@pytest.fixture
def app_without_token(tmp_path: Path) -> Iterator[Any]:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    app = build_app(url, tmp_path, FakeEngines(), FakeRouter())
    yield app
    app.extensions["db"].dispose()


def test_metrics_off(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'off.db'}"
    app = build_app(url, tmp_path, FakeEngines(), FakeRouter(), METRICS=False, METRICS_TOKEN=TOKEN)
    api = ApiActions(app, app.test_client())
    assert "metrics" not in app.extensions
    assert api.client.get("/metrics", headers=AUTH).status_code == 404
    assert api.chat(api.tenant(), stream=True).status_code == 200
    app.extensions["db"].dispose()


# -- real gunicorn: multiprocess mode -----------------------------------------------------------


def workers_of(server: srv.Server) -> set[int]:
    return workers_of_pid(server.proc.pid)


def test_gunicorn_workers_are_summed_and_dead_ones_stop_counting(tmp_path: Path):
    home = tmp_path / "gw"
    home.mkdir()
    db_url = srv.prepare(home, {"ops@example.com": 50_000_000})
    key, _ = srv.api_key(home, db_url, "ops@example.com")
    metrics_dir = tmp_path / "prom"
    env = {
        "INFERBASE_METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "INFERBASE_FAKE_DELAY_S": "0.3",  # streams stay open a few seconds
    }
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # a last run's file: removed at start
    server = srv.start(home, db_url, workers=2, threads=8, extra_env=env)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "local/tiny-a", "messages": [{"role": "user", "content": "hi"}]}
    try:
        assert not (metrics_dir / "counter_1.db").exists()
        first = workers_of(server)
        assert len(first) == 2
        n = 12
        for _ in range(n):  # a new connection each: the workers share them
            rv = httpx.post(server.url + URL, json={**body, "max_tokens": 2}, headers=headers)
            assert rv.status_code == 200, rv.text
        opened = threading.Event()

        def hold_stream() -> None:
            payload = {**body, "stream": True}
            try:
                with httpx.stream(
                    "POST", server.url + URL, json=payload, headers=headers, timeout=30
                ) as rv:
                    for _ in rv.iter_bytes():
                        opened.set()
            except httpx.HTTPError:
                pass  # its worker is killed below

        holder = threading.Thread(target=hold_stream)
        holder.start()
        assert opened.wait(10)
        got = samples(httpx.get(server.url + "/metrics", headers=AUTH).text)
        assert value(got, "inferbase_open_streams") == 1
        # kill every worker that served them: the master starts new ones, which served nothing
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        holder.join(30)
        deadline = time.monotonic() + 30
        while True:
            now = workers_of(server)
            if len(now) == 2 and not now & first:
                try:
                    rv = httpx.get(server.url + "/metrics", headers=AUTH, timeout=5)
                    if rv.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            assert time.monotonic() < deadline, "no new workers"
            time.sleep(0.2)
        got = samples(rv.text)
        route = {"route": URL, "method": "POST"}
        assert value(got, "inferbase_http_requests_total", **route, status="200") == n + 1
        tokens = value(got, "inferbase_tokens_total", model="local/tiny-a", kind="completion")
        assert tokens >= 2 * n
        assert value(got, "inferbase_open_streams") == 0  # the dead worker's stream is gone
        assert value(got, "inferbase_engine_up", model="local/tiny-a") == 1
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()


def test_inferbase_serve_with_the_images_metrics_directory(tmp_path: Path):
    """`inferbase serve` as the image runs it: PROMETHEUS_MULTIPROC_DIR names a directory that does
    not exist yet. The CLI process (which loads the app before gunicorn starts) records no
    metrics; gunicorn makes the directory and its workers' counts reach /metrics."""
    port = srv.free_port()
    metrics_dir = tmp_path / "not-yet" / "metrics"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(srv.REPO),
        "INFERBASE_HOME": str(tmp_path),
        "INFERBASE_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "INFERBASE_ENGINES_FACTORY": "serving.testing.fakes:make_engines",
        "INFERBASE_METRICS_TOKEN": TOKEN,
        "INFERBASE_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],  # the test's own store
    }
    argv = [sys.executable, "-m", "serving.cli", "serve", "--port", str(port), "--workers", "2"]
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=srv.REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                rv = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if rv.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.3)
        for _ in range(3):
            assert httpx.get(f"http://127.0.0.1:{port}/api/v1/inference/models").status_code == 200
        got = samples(httpx.get(f"http://127.0.0.1:{port}/metrics", headers=AUTH).text)
        route = {"route": "/api/v1/inference/models", "method": "GET", "status": "200"}
        assert value(got, "inferbase_http_requests_total", **route) == 3
        assert {p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("*.db")} <= {
            f"{pid}.db" for pid in workers_of_pid(proc.pid)
        }  # only the workers write there
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def workers_of_pid(pid: int) -> set[int]:
    return {p.pid for p in psutil.Process(pid).children()}
