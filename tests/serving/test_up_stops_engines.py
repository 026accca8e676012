"""Stopping `inferbase up` (Ctrl-C, SIGTERM) stops the local engines it started, and leaves those
that ran before it. The whole command runs for real (migrations, `engines up`, the demo key,
gunicorn); only the engine is a stand-in: a `vllm` package on PYTHONPATH whose OpenAI server answers
/health, so `serving.engines.local` starts, records and stops it exactly as it does vLLM (vLLM
itself takes minutes and gigabytes to start here)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from serving.engines import local

REPO = Path(__file__).resolve().parents[2]
PORT_BASE = int(os.environ.get("INFERBASE_TEST_UP_PORT_BASE", "19670"))  # engines, then gateway
FAKE_SERVER = """
import argparse, json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int)
ap.add_argument("--served-model-name")
args, _ = ap.parse_known_args()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        data = {"object": "list", "data": [{"id": args.served_model_name}]}
        body = json.dumps(data).encode() if self.path.startswith("/v1/models") else b""
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
"""


@pytest.fixture
def home(tmp_path):
    pkg = tmp_path / "fakevllm" / "vllm" / "entrypoints" / "openai"
    pkg.mkdir(parents=True)
    for d in (pkg, pkg.parent, pkg.parent.parent):
        (d / "__init__.py").write_text("")
    (pkg / "api_server.py").write_text(FAKE_SERVER)
    (tmp_path / "weights").mkdir()
    models = [
        {"id": f"fake/{name}", "context_length": 512,
         "price_usd_per_mtok": {"input": 0.1, "output": 0.3},
         "launch": {"model": str(tmp_path / "weights"), "port_offset": i}}
        for i, name in enumerate(("before", "mine"))
    ]  # fmt: skip
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"port_base": PORT_BASE, "models": models}))
    first = tmp_path / "catalog-before.yaml"  # started before `up`
    first.write_text(yaml.safe_dump({"port_base": PORT_BASE, "models": models[:1]}))
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path / 'fakevllm'}{os.pathsep}{REPO}",
        "INFERBASE_HOME": str(tmp_path / "home"),
        "INFERBASE_CATALOG": str(catalog),
        "INFERBASE_ENGINE_PORT_BASE": str(PORT_BASE),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    rd = local.run_dir(tmp_path / "home")
    yield env, rd, first
    local.stop_all(rd, grace_s=5)  # whatever a failed test left


def inferbase(env, *args, **kw):
    return [sys.executable, "-m", "serving.cli", *args], {"cwd": REPO, "env": env, **kw}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_up_stops_the_engines_it_started(home, tmp_path, sig):
    env, rd, first = home
    argv, kw = inferbase(env, "engines", "up", "--catalog", str(first), "--timeout", "60")
    subprocess.run(argv, check=True, capture_output=True, timeout=120, **kw)
    (before,) = local.running(rd)
    port = PORT_BASE + 10
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    argv, kw = inferbase(env, "up", "--port", str(port), "--workers", "1", "--threads", "4")
    up = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kw)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/inference/models").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        mine = local.running(rd) - {before}
        assert mine == {"fake--mine-0"}
        pids = {n: local.read_record_file(local.record_file(rd, n))["pid"] for n in (before, *mine)}
        up.send_signal(sig)  # `up` became gunicorn's master (serve execs it)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        log.close()
    out = (tmp_path / "up.log").read_text()
    assert not psutil.pid_exists(pids["fake--mine-0"]), out
    assert local.running(rd) == {before}  # the engine that ran before `up` still runs
    assert "already running before `up`, left running when it stops" in out
    assert "stopped 1 local engine(s): fake--mine-0" in out


def test_up_failing_before_it_serves_stops_the_engines_it_started(home, tmp_path):
    env, rd, _first = home
    port = PORT_BASE + 11
    with socket.create_server(("127.0.0.1", port)):  # the gateway's port is taken
        argv, kw = inferbase(env, "up", "--port", str(port), "--workers", "1")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    assert out.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in out.stderr
    # both were started by this `up` (none ran before it)
    assert "stopped fake--before-0" in out.stderr and "stopped fake--mine-0" in out.stderr
    assert local.running(rd) == set()
