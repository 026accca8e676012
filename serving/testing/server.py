"""A real gunicorn server of the gateway (temp SQLite, fake engines) for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from serving import accounts, create_app, db

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
SECRET_KEY = "dashboard-test-secret-" + "x" * 32  # the servers' (API-key hashes are keyed by it)


def free_port(lo: int = 18400, hi: int = 18500) -> int:
    for port in range(lo, hi):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in the dashboard range")


@dataclass
class Server:
    url: str
    db_url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def prepare(home: Path, users: dict[str, int]) -> str:
    """Migrate a fresh SQLite database under `home` and create `users` (email -> micro-credits)."""
    db_url = f"sqlite:///{home / 'gateway.db'}"
    app = create_app(
        {
            "DATABASE_URL": db_url,
            "HOME": str(home),
            "AUTO_MIGRATE": True,
            "ENGINES_FACTORY": "serving.testing.fakes:make_engines",
            "DASHBOARD": False,
        }
    )
    with db.write(db.get_engine(app)) as conn:
        for email, micros in users.items():
            accounts.create_account(conn, email, PASSWORD, micros)
    db.get_engine(app).dispose()
    return db_url


def api_key(home: Path, db_url: str, email: str, name: str = "test") -> tuple[str, str]:
    """A new API key of `email`'s account that `start`'s servers accept: (raw key, key id)."""
    from serving import keys

    app = create_app(
        {
            "DATABASE_URL": db_url,
            "HOME": str(home),
            "SECRET_KEY": SECRET_KEY,
            "ENGINES_FACTORY": "serving.testing.fakes:make_engines",
            "DASHBOARD": False,
        }
    )
    with db.write(db.get_engine(app)) as conn:
        account = accounts.require(conn, email)
        row, raw = keys.create(conn, app.extensions["auth"].secret, account["id"], name, [])
    db.get_engine(app).dispose()
    return raw, str(row["id"])


def start(
    home: Path,
    db_url: str,
    workers: int = 2,
    threads: int = 32,
    worker_class: str = "serving.gworker.Worker",
    extra_env: dict[str, str] | None = None,
) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "INFERBASE_DATABASE_URL": db_url,
        "INFERBASE_HOME": str(home),
        "INFERBASE_SECRET_KEY": SECRET_KEY,
        "INFERBASE_ENGINES_FACTORY": "serving.testing.fakes:make_engines",
        "INFERBASE_EVENTS_POLL_S": "0.3",
        **(extra_env or {}),
    }
    log = home / "gunicorn.log"
    # the server hooks (Prometheus multiprocess mode) and logger `inferbase serve` runs with
    argv = [sys.executable, "-m", "gunicorn", "--worker-class", worker_class,
            "--config", "python:serving.gconf", "--logger-class", "serving.gworker.Logger",
            "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--timeout", "60",
            "--graceful-timeout", "5", "--no-control-socket",
            "serving.testing.app:app"]  # fmt: skip
    if worker_class != "gevent":
        argv[5:5] = ["--threads", str(threads)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", db_url, proc, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + log.read_text()[-3000:])
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("gunicorn did not come up:\n" + log.read_text()[-3000:])
