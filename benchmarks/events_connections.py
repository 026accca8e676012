"""How many live connections a gunicorn worker class holds: WebSockets + SSE streams at once.

For each configuration, one real gateway (fake engines, temp SQLite) is started and loaded with:
N open event WebSockets (one account, so each request's usage event fans out to all N), then M
concurrent streaming chat requests (slow fake engine: ~1.6 s each) while the sockets stay open, and
meanwhile a probe that times plain GET /healthz requests. Reported: sockets that got their `hello`,
streams completed, probe latency p50/p99 and failures, and how long a usage event took to reach all
N sockets. The load generator shares the cores. Run:
`python benchmarks/events_connections.py [N] [M] [gthread:64 gthread:512 gevent]`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.testing import server as srv  # noqa: E402

CONFIGS = [
    ("gthread", {"workers": 2, "threads": 64}),
    ("gthread", {"workers": 2, "threads": 512}),
    ("gevent", {"workers": 2}),
]
EMAIL = "bench@example.com"


async def hold_socket(
    url: str, key: str, hello: asyncio.Event, usage: asyncio.Event, stop: asyncio.Event
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=20) as ws:
            while not stop.is_set():
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if msg["type"] == "hello":
                    hello.set()
                elif msg["type"] == "usage":
                    usage.set()
    except (OSError, TimeoutError, websockets.WebSocketException):
        return  # counted as not opened


async def stream(client: httpx.AsyncClient, key: str) -> bool:
    body = {
        "model": "local/tiny-a",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with client.stream("POST", "/api/v1/inference/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {key}"}) as rv:  # fmt: skip
        text = "".join([chunk async for chunk in rv.aiter_text()])
    return rv.status_code == 200 and text.rstrip().endswith("data: [DONE]")


async def probe(
    client: httpx.AsyncClient, stop: asyncio.Event, out: list[float], fails: list[int]
) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            rv = await client.get("/healthz", timeout=5)
            rv.raise_for_status()
            out.append((time.perf_counter() - t0) * 1000)
        except httpx.HTTPError:
            fails.append(1)
        await asyncio.sleep(0.05)


async def load(server: srv.Server, key: str, n: int, m: int) -> dict[str, object]:
    url = server.url.replace("http://", "ws://") + "/api/v1/events"
    stop = asyncio.Event()
    hellos = [asyncio.Event() for _ in range(n)]
    usages = [asyncio.Event() for _ in range(n)]
    limits = httpx.Limits(max_connections=m + 10)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
        sockets = [
            asyncio.create_task(hold_socket(url, key, h, u, stop))
            for h, u in zip(hellos, usages, strict=True)
        ]
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(h.wait() for h in hellos)), 20)
        except TimeoutError:
            pass
        opened = sum(h.is_set() for h in hellos)
        open_s = time.perf_counter() - t0
        idle: list[float] = []
        fails: list[int] = []
        idle_stop = asyncio.Event()
        prober = asyncio.create_task(probe(client, idle_stop, idle, fails))
        await asyncio.sleep(3)  # the sockets only held open
        idle_stop.set()
        await prober
        lat: list[float] = []
        prober = asyncio.create_task(probe(client, stop, lat, fails))
        t0 = time.perf_counter()
        try:
            done = await asyncio.wait_for(
                asyncio.gather(*(stream(client, key) for _ in range(m)), return_exceptions=True), 30
            )
        except TimeoutError:
            done = []
        streams_s = time.perf_counter() - t0
        ok_streams = sum(d is True for d in done)
        for u in usages:
            u.clear()
        t0 = time.perf_counter()
        try:
            await client.post(
                "/api/v1/inference/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "local/tiny-a", "messages": [{"role": "user", "content": "x"}]},
            )
            await asyncio.wait_for(
                asyncio.gather(
                    *(u.wait() for u, h in zip(usages, hellos, strict=True) if h.is_set())
                ),
                20,
            )
            fanout_ms = (time.perf_counter() - t0) * 1000
        except (TimeoutError, httpx.HTTPError):
            fanout_ms = float("nan")
        stop.set()
        await prober
        for s in sockets:
            s.cancel()
        await asyncio.gather(*sockets, return_exceptions=True)
    q = statistics.quantiles(lat, n=100) if len(lat) > 2 else [float("nan")] * 99
    return {
        "idle_probe_p50_ms": round(statistics.median(idle), 1) if idle else "-",
        "sockets_open": f"{opened}/{n} in {open_s:.1f}s",
        "streams_ok": f"{ok_streams}/{m} in {streams_s:.1f}s",
        "probe_p50_ms": round(q[49], 1),
        "probe_p99_ms": round(q[98], 1),
        "probe_fail": len(fails),
        "event_to_all_ms": f"{fanout_ms:.0f}",
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    only = sys.argv[3:]  # e.g. "gevent" or "gthread:512"
    print(f"{n} WebSockets + {m} SSE streams, 2 workers each")
    for worker_class, opts in CONFIGS:
        tag = f"{worker_class}:{opts.get('threads', '')}".rstrip(":")
        if only and tag not in only:
            continue
        home = Path(tempfile.mkdtemp(prefix="dash_bench_"))
        db_url = srv.prepare(home, {EMAIL: 1_000_000_000})
        env = {"INFERBASE_FAKE_DELAY_S": "0.2", "INFERBASE_DEFAULT_RPM": "100000"}
        server = srv.start(home, db_url, worker_class=worker_class, extra_env=env, **opts)
        try:
            client = httpx.Client(base_url=server.url)
            client.post("/api/v1/auth/login", json={"email": EMAIL, "password": srv.PASSWORD})
            csrf = {"X-CSRF-Token": client.cookies["inferbase_csrf"]}
            key = client.post("/api/v1/inference/keys", json={"name": "b"}, headers=csrf).json()[
                "key"
            ]
            result = asyncio.run(load(server, key, n, m))
        finally:
            server.stop()
        label = f"{worker_class} " + " ".join(f"{k}={v}" for k, v in opts.items())
        print(f"{label:32s} " + "  ".join(f"{k}={v}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
