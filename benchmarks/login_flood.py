"""Another tenant's chat latency while unauthenticated login loops hammer the gateway (issue 14,
finding 1), under gunicorn with the fake engines, one configuration after another:

- `none`: no login load;
- `unguarded`: the login throttle off and 64 hashing slots per worker (what the gateway did before);
- `gate`: the throttle off, one hashing slot per worker (attackers from many addresses);
- `defaults`: the shipped configuration (throttle per address and account, one slot per worker).

Each run starts a fresh database (fresh login counters) and prints the chat p50/p90 over the whole
window and over its second half, and the login answers by status.

    python benchmarks/login_flood.py [--seconds 30] [--loops 16] [--port 19510] [--configs ...]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving import accounts, create_app, db, keys  # noqa: E402
from serving.cli import gunicorn_argv  # noqa: E402
from serving.testing.fakes import FakeEngines, FakeRouter  # noqa: E402

CHAT = "/api/v1/inference/chat/completions"
SECRET = "login-flood-" + "s" * 32
OFF = {
    "INFERBASE_LOGIN_LIMIT_PER_CLIENT": "10000000 per minute",
    "INFERBASE_LOGIN_LIMIT_PER_ACCOUNT": "10000000 per minute",
}
CONFIGS: dict[str, tuple[dict[str, str], bool]] = {
    "none": ({}, False),
    "unguarded": ({**OFF, "INFERBASE_PASSWORD_HASH_CONCURRENCY": "64"}, True),
    "gate": ({**OFF, "INFERBASE_PASSWORD_HASH_CONCURRENCY": "1"}, True),
    "defaults": ({}, True),
}


def _flood(base: str, stop_at: float, out: Any) -> None:
    codes: dict[int, int] = {}
    with httpx.Client(base_url=base, timeout=30) as c:
        while time.time() < stop_at:
            body = {"email": "victim@example.com", "password": "guess"}
            status = c.post("/api/v1/auth/login", json=body).status_code
            codes[status] = codes.get(status, 0) + 1
    out.put(codes)


def _fresh() -> tuple[Path, str, str]:
    home = Path(tempfile.mkdtemp(prefix="login-flood-"))
    url = f"sqlite:///{home / 'gateway.db'}"
    app = create_app(
        {
            "HOME": str(home),
            "DATABASE_URL": url,
            "SECRET_KEY": SECRET,
            "ENGINES": FakeEngines(),
            "ROUTER": FakeRouter(),
            "AUTO_MIGRATE": True,
            "REDIS_URL": None,
        }
    )
    with app.app_context(), db.write() as conn:
        accounts.create_account(conn, "victim@example.com", "the-right-password")
        tenant = accounts.create_account(conn, "tenant@example.com", None, 10_000_000)
        _, key = keys.create(
            conn,
            app.extensions["auth"].secret,
            tenant,
            "bench",
            [],
            "balanced",
            rpm_limit=1_000_000,
        )
    app.extensions["db"].dispose()
    return home, url, key


def run(name: str, seconds: float, loops: int, port: int) -> None:
    extra, flood = CONFIGS[name]
    home, url, key = _fresh()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "INFERBASE_DATABASE_URL": url,
        "INFERBASE_HOME": str(home),
        "INFERBASE_SECRET_KEY": SECRET,
        "INFERBASE_ENGINES_FACTORY": "serving.testing.fakes:make_engines",
        **extra,
    }
    env.pop("INFERBASE_REDIS_URL", None)
    base = f"http://127.0.0.1:{port}"
    with open(home / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            gunicorn_argv(f"127.0.0.1:{port}", 2, 32), cwd=REPO, env=env, stdout=log, stderr=log
        )
        try:
            _measure(name, base, key, seconds, loops if flood else 0)
        finally:
            server.terminate()
            server.wait(30)


def _measure(name: str, base: str, key: str, seconds: float, loops: int) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    body = {"model": "local/tiny-a", "messages": [{"role": "user", "content": "hi"}]}
    chat = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {key}"})
    for _ in range(20):
        chat.post(CHAT, json=body)
    out: Any = mp.Queue()
    stop_at = time.time() + seconds
    procs = [mp.Process(target=_flood, args=(base, stop_at, out)) for _ in range(loops)]
    for p in procs:
        p.start()
    time.sleep(1.0)
    whole: list[float] = []
    late: list[float] = []
    half = stop_at - seconds / 2
    while time.time() < stop_at - 0.5:
        t = time.perf_counter()
        rv = chat.post(CHAT, json=body)
        ms = (time.perf_counter() - t) * 1000
        assert rv.status_code == 200, rv.text
        whole.append(ms)
        if time.time() > half:
            late.append(ms)
    codes: dict[int, int] = {}
    for p in procs:
        for status, n in out.get().items():
            codes[status] = codes.get(status, 0) + n
        p.join()
    whole.sort()
    print(
        f"{name:10s} chat n={len(whole):5d} p50={statistics.median(whole):6.1f} ms "
        f"p90={whole[int(len(whole) * 0.9)]:6.1f} ms; second half p50="
        f"{statistics.median(late):6.1f} ms; logins by status {dict(sorted(codes.items()))}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--loops", type=int, default=16)
    ap.add_argument("--port", type=int, default=19510)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args()
    for name in args.configs:
        run(name, args.seconds, args.loops, args.port)


if __name__ == "__main__":
    main()
