"""The local launcher's process handling (records, no duplicates, group stop, crash detection)
with a stand-in server process; the same paths run against real vLLM in test_vllm_integration.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import psutil
import pytest
import yaml
from click.testing import CliRunner

from serving.engines import local
from serving.engines.catalog import parse_catalog
from serving.engines.cli import engines_cli
from tests.engines.conftest import free_port

# A server that answers /health and also forks a child (like vLLM's engine core).
SERVER = textwrap.dedent("""
    import http.server, subprocess, sys
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path))
    port = free_port()
    models = parse_catalog({"models": [{
        "id": "local/fake", "context_length": 64, "price_usd_per_mtok": {"input": 1, "output": 1},
        "launch": {"model": str(tmp_path / "m")}}], "port_base": port})  # fmt: skip
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    crash = {"on": False}

    def command(rep, rd):
        if crash["on"]:
            return [sys.executable, "-c", "import sys; print('boom: bad weights'); sys.exit(3)"]
        return [sys.executable, str(script), str(rep.port)]

    monkeypatch.setattr(local, "command", command)
    rd = local.run_dir()
    yield rd, models, crash
    local.stop_all(rd, grace_s=2)


def test_start_is_idempotent_and_stop_takes_the_whole_group(setup):
    rd, models, _ = setup
    (rep,) = local.local_replicas(models)
    first = local.start(rd, rep)
    assert first["started"] and first["url"] == rep.url
    local.wait_ready(rd, [rep], timeout_s=30)
    again = local.start(rd, rep)
    assert not again["started"] and again["pid"] == first["pid"]
    proc = psutil.Process(first["pid"])
    children = proc.children(recursive=True)
    assert children
    assert local.status(rd, models)[0]["state"] == "ready"
    assert local.stop_all(rd, grace_s=5) == [rep.name]
    psutil.wait_procs([proc, *children], timeout=5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children)
    assert local.status(rd, models)[0]["state"] == "stopped"
    assert local.stop_all(rd) == []


def test_a_reused_pid_is_not_taken_for_our_server(setup):
    rd, models, _ = setup
    (rep,) = local.local_replicas(models)
    rec = local.start(rd, rep)
    assert local.record_alive(rec)
    assert not local.record_alive({**rec, "create_time": rec["create_time"] - 100})


def test_up_reports_a_crash_with_the_log_tail(setup):
    rd, models, crash = setup
    crash["on"] = True
    (rep,) = local.local_replicas(models)
    local.start(rd, rep)
    with pytest.raises(local.LaunchError, match="boom: bad weights"):
        local.wait_ready(rd, [rep], timeout_s=30)


def test_start_refuses_a_port_someone_else_holds(setup):
    rd, models, _ = setup
    (rep,) = local.local_replicas(models)
    other = subprocess.Popen([sys.executable, str(rd.parent / "server.py"), str(rep.port)])
    try:
        deadline = time.monotonic() + 20
        while not local._port_open(rep.port):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(local.LaunchError, match="taken"):
            local.start(rd, rep)
    finally:
        for c in psutil.Process(other.pid).children(recursive=True):
            c.kill()
        other.kill()
        other.wait()


def test_cli_up_and_down(setup, tmp_path):
    rd, models, _ = setup
    cat = tmp_path / "cat.yaml"

    cat.write_text(yaml.safe_dump({"port_base": models[0].launch["ports"][0], "models": [{
        "id": "local/fake", "context_length": 64, "price_usd_per_mtok": {"input": 1, "output": 1},
        "launch": {"model": str(tmp_path / "m")}}]}))  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(engines_cli, ["up", "--catalog", str(cat), "--timeout", "30"])
    assert res.exit_code == 0 and "local--fake-0: started" in res.output, res.output
    res = runner.invoke(engines_cli, ["up", "--catalog", str(cat)])
    assert "local--fake-0: already running" in res.output, res.output
    res = runner.invoke(engines_cli, ["down"])
    assert "stopped 1 engine(s): local--fake-0" in res.output
    res = runner.invoke(engines_cli, ["up", "--catalog", str(tmp_path / "missing.yaml")])
    assert res.exit_code != 0 and "catalog file not found" in res.output


def test_cli_up_that_fails_stops_what_it_started(setup, tmp_path, monkeypatch):
    """One replica crashes at start-up: `up` fails with its log tail and does not leave the
    replicas it had started running (each vLLM server holds GBs) with nobody to stop them."""
    rd, models, _ = setup
    script = tmp_path / "server.py"

    def command(rep, rd):
        if rep.name.endswith("-1"):
            return [sys.executable, "-c", "import sys; print('boom: bad weights'); sys.exit(3)"]
        return [sys.executable, str(script), str(rep.port)]

    monkeypatch.setattr(local, "command", command)
    cat = tmp_path / "cat2.yaml"
    cat.write_text(yaml.safe_dump({"port_base": models[0].launch["ports"][0], "models": [{
        "id": "local/fake", "context_length": 64, "price_usd_per_mtok": {"input": 1, "output": 1},
        "launch": {"model": str(tmp_path / "m"), "replicas": 2}}]}))  # fmt: skip
    res = CliRunner().invoke(engines_cli, ["up", "--catalog", str(cat), "--timeout", "30"])
    assert res.exit_code != 0 and "boom: bad weights" in res.output, res.output
    assert "stopped what this call had started: local--fake-0" in res.output
    assert local.running(rd) == set()
