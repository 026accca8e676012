"""A local Inferbase gateway for notebooks and demos, driven only through the `inferbase` CLI.

`LocalGateway` runs the operator command (`python -m serving.cli`, the `inferbase` entry point) as
subprocesses with its own home directory: `engines up` (real vLLM engines from the catalog),
`db upgrade`, `accounts create`, `keys create`, `serve` (gunicorn); it talks to the running server
over HTTP only (evals never imports serving). `stop()` ends what it started, by process id.

`read_stream(chunks)` summarises an OpenAI SDK chat stream: the routing event Inferbase sends first
for `model: "auto"`, the text, the served model and the usage chunk.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
API_PREFIX = "/api/v1/inference"
PIDFILE = "gateway.pid"


class GatewayError(Exception):
    pass


@dataclass
class LocalGateway:
    home: Path
    port: int
    engine_port_base: int = 18510
    env_overrides: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    _server: subprocess.Popen[bytes] | None = None
    _engines_started: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the OpenAI SDK takes as `base_url`."""
        return self.url + API_PREFIX

    def env(self) -> dict[str, str]:
        bindir = str(Path(sys.executable).parent)  # gunicorn lives beside the interpreter
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "INFERBASE_HOME": str(self.home),
            "INFERBASE_ENGINE_PORT_BASE": str(self.engine_port_base),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        env.update(self.env_overrides)
        return env

    def cli(self, *args: str, timeout: float = 600.0) -> str:
        """Run `inferbase ARGS...`; returns stdout, raises GatewayError with stderr on failure."""
        cmd = [sys.executable, "-m", "serving.cli", *args]
        out = subprocess.run(
            cmd, cwd=REPO_ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if out.returncode != 0:
            raise GatewayError(f"inferbase {' '.join(args)} failed: {out.stderr.strip()[-2000:]}")
        return out.stdout

    # ---------------------------------------------------------------- lifecycle

    def engines_up(self, timeout: float = 400.0) -> str:
        self.home.mkdir(parents=True, exist_ok=True)
        self._engines_started = True
        atexit.register(self.stop)  # a failing notebook cell must not leave engines behind
        return self.cli("engines", "up", "--timeout", str(timeout), timeout=timeout + 60)

    def start(self, workers: int = 1, threads: int = 16, timeout: float = 120.0) -> None:
        """`inferbase serve` in the background (own process group); waits for /healthz."""
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path or self.home / "gateway.log", "ab")  # noqa: SIM115
        cmd = [sys.executable, "-m", "serving.cli", "serve", "--port", str(self.port)]
        cmd += ["--workers", str(workers), "--threads", str(threads)]
        self._server = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=self.env(), stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        (self.home / PIDFILE).write_text(str(self._server.pid))
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise GatewayError(f"gateway exited with {self._server.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise GatewayError(f"gateway not healthy after {timeout}s: {self.log()}")

    def log(self, tail: int = 3000) -> str:
        path = self.log_path or self.home / "gateway.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the server this object started (its process group) and the engines it started.

        Idempotent: also registered with `atexit` when something is started."""
        if self._server is not None and self._server.poll() is None:
            os.killpg(self._server.pid, signal.SIGTERM)
            try:
                self._server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._server.pid, signal.SIGKILL)
                self._server.wait(timeout=10)
        self._server = None
        (self.home / PIDFILE).unlink(missing_ok=True)
        if self._engines_started:
            self.cli("engines", "down", timeout=120)
            self._engines_started = False

    @classmethod
    def cleanup(cls, home: Path, engine_port_base: int = 18510) -> None:
        """Stop what a gateway under `home` left running (its kernel was killed, atexit never ran):
        the server recorded in the pidfile and the engines recorded in the engines run dir."""
        pidfile = home / PIDFILE
        if pidfile.exists():
            try:
                os.killpg(int(pidfile.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError, PermissionError):
                pass
            pidfile.unlink(missing_ok=True)
        if (home / "engines").is_dir():
            gw = cls(home, 0, engine_port_base)
            gw._engines_started = True
            gw.stop()

    def __enter__(self) -> LocalGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- operator commands

    def create_account(self, email: str, credits: str) -> str:
        return self.cli("accounts", "create", email, "--credits", credits).strip()

    def create_key(
        self, email: str, name: str, pool: Sequence[str] = (), optimize: str = "balanced"
    ) -> str:
        """A new API key for `email` (pool = the models `auto` may pick); returns the raw key."""
        args = ["keys", "create", "--account", email, "--name", name, "--optimize", optimize]
        if pool:
            args += ["--pool", ",".join(pool)]
        return self.cli(*args).strip().splitlines()[-1]

    # ---------------------------------------------------------------- HTTP

    def get(self, path: str, key: str, **params: Any) -> Any:
        r = httpx.get(
            self.base_url + path,
            headers={"Authorization": f"Bearer {key}"},
            params=params,
            timeout=30,
        )
        r.raise_for_status()
        return r.json()


@dataclass
class StreamSummary:
    routing: dict[str, Any] | None
    model: str | None
    text: str
    usage: dict[str, Any] | None
    chunks: int


def read_stream(chunks: Iterable[Any]) -> StreamSummary:
    """Summarise OpenAI SDK chat-completion chunks (routing event, text, served model, usage)."""
    routing, model, usage, parts, n = None, None, None, [], 0
    for c in chunks:
        n += 1
        if getattr(c, "object", None) == "routing":
            routing = c.model_dump(exclude={"choices"})
            continue
        model = c.model or model
        for choice in c.choices or []:
            parts.append(choice.delta.content or "")
        if getattr(c, "usage", None) is not None:
            usage = c.usage.model_dump()
    return StreamSummary(routing, model, "".join(parts), usage, n)
