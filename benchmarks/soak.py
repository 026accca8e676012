"""Soak: many concurrent streams through the gateway for minutes; errors, latency, memory growth.

`--streams` clients (default 200) each send streamed chat requests back to back on a kept-alive
connection (as the OpenAI SDKs' pooled clients do), prompts drawn at random (fixed seed) from
ShareGPT's first turns (`$INFERBASE_DATA_DIR/sharegpt/first_turns.jsonl.gz`), to `inferbase serve`
(gunicorn, SQLite, every request authenticated, reserved, settled and usage-logged) in front of
the fast fake upstream (benchmarks/fake_upstream.py: `--chunks` chunks, `--chunk-delay-ms` apart).
The same clients first run `--direct-s` seconds straight at the upstream: the added latency is the
gateway's percentile minus the upstream's.

Memory: the resident set (RSS) of the gunicorn master and its workers, sampled every second; the
growth is from the start of the steady state (after `--warmup-s`, when every client's connection,
thread and first requests exist) to the end. Judged: zero errors, growth under 5%.

    python benchmarks/soak.py [--duration 300] [--streams 200] [--json out.json]

The client is asyncio over raw sockets (uvloop when installed): an HTTP client library would spend
more of the shared CPU than the gateway under test.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway  # noqa: E402  (benchmarks/, this script's directory)

PY = sys.executable
CHAT = "/api/v1/inference/chat/completions"
DIRECT = "/v1/chat/completions"
GROWTH_LIMIT = 0.05
TEXT = re.compile(rb'"content": ?"[^"]')  # a chunk that carries generated text


def prompts(n: int = 2000, seed: int = 0) -> list[str]:
    """`n` ShareGPT first turns, drawn with a fixed seed (prompts over 4,000 characters cut)."""
    base = os.environ.get("INFERBASE_DATA_DIR") or str(ROOT.parent / "shared" / "data")
    path = Path(base) / "sharegpt" / "first_turns.jsonl.gz"
    with gzip.open(path, "rt") as f:
        rows = [json.loads(line)["prompt"] for line in f]
    rng = random.Random(seed)
    return [p[:4000] for p in rng.sample(rows, min(n, len(rows))) if p.strip()]


@dataclass
class Phase:
    name: str
    latency_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def pct(self, xs: list[float], q: float) -> float:
        if not xs:
            return float("nan")
        return statistics.quantiles(xs, n=1000, method="inclusive")[int(q * 10) - 1]


async def one_stream(reader, writer, head: bytes, body: bytes, phase: Phase) -> None:  # type: ignore[no-untyped-def]
    """Send one request on the kept-alive connection and read its chunked SSE answer to the end."""
    t0 = time.perf_counter()
    writer.write(head % len(body) + body)
    status = await reader.readline()
    if not status.startswith(b"HTTP/1.1 200"):
        raise ValueError(f"status {status[9:12].decode(errors='replace') or 'none'}")
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
            chunked = True
    if not chunked:
        raise ValueError("not chunked")
    first = None
    done = False
    while True:
        size = int((await reader.readline()).strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            break
        data = await reader.readexactly(size + 2)
        if first is None and TEXT.search(data):
            first = time.perf_counter()
        if b'"error"' in data:
            raise ValueError("error frame")
        if b"data: [DONE]" in data:
            done = True
    if not done:
        raise ValueError("no [DONE]")
    end = time.perf_counter()
    phase.latency_ms.append((end - t0) * 1000)
    if first is not None:
        phase.ttft_ms.append((first - t0) * 1000)


async def client(port: int, path: str, key: str, model: str, texts: list[str], seed: int,
                 deadline: float, max_tokens: int, phase: Phase) -> None:  # fmt: skip
    rng = random.Random(seed)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: %d\r\n\r\n"
    ).encode()
    conn = None
    while time.perf_counter() < deadline:
        body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": rng.choice(texts)}],
             "max_tokens": max_tokens, "stream": True}
        ).encode()  # fmt: skip
        try:
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.wait_for(one_stream(*conn, head, body, phase), 60)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as e:
            phase.error(str(e) if isinstance(e, ValueError) else type(e).__name__)
            if conn is not None:
                conn[1].close()
            conn = None
            await asyncio.sleep(0.1)
    if conn is not None:
        conn[1].close()


def run_phase(name: str, port: int, path: str, key: str, model: str, texts: list[str],
              streams: int, seconds: float, max_tokens: int) -> Phase:  # fmt: skip
    phase = Phase(name)

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(
            *(client(port, path, key, model, texts, i, deadline, max_tokens, phase)
              for i in range(streams))
        )  # fmt: skip

    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    t0 = time.perf_counter()
    runner(main())
    phase.seconds = time.perf_counter() - t0
    return phase


def tree_rss(pid: int) -> tuple[int, int]:
    """Resident bytes and threads of a process and its children (the gunicorn master and its
    workers)."""
    total = threads = 0
    p = psutil.Process(pid)
    for q in [p, *p.children(recursive=True)]:
        try:
            total += q.memory_info().rss
            threads += q.num_threads()
        except psutil.NoSuchProcess:
            pass
    return total, threads


class Sampler(threading.Thread):
    """RSS of the gateway every second, stamped with the time since the load began."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.samples.append((time.monotonic() - self.t0, *tree_rss(self.pid)))


def soak(duration: float, streams: int, warmup: float, direct_s: float, workers: int,
         chunks: int, chunk_delay_ms: float, port_base: int,
         extra_env: dict[str, str] | None = None) -> dict:  # fmt: skip
    texts = prompts()
    load = os.getloadavg()
    upstream, gw_port = port_base, port_base + 1
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        gateway.spawn(
            stack,
            [PY, str(ROOT / "benchmarks" / "fake_upstream.py"), "--port", str(upstream),
             "--chunks", str(chunks), "--chunk-delay-ms", str(chunk_delay_ms)],
            dict(os.environ),
            tmp / "upstream.log",
        )  # fmt: skip
        gateway.wait_http(f"http://127.0.0.1:{upstream}/health")
        genv, key = gateway.gateway_home(tmp, upstream)
        genv.update(extra_env or {})
        gw = gateway.spawn(
            stack,
            [PY, "-m", "serving.cli", "serve", "--port", str(gw_port), "--workers", str(workers)],
            genv,
            tmp / "gateway.log",
        )
        gateway.wait_http(
            f"http://127.0.0.1:{gw_port}/api/v1/inference/models", proc=gw, log=tmp / "gateway.log"
        )
        direct = run_phase("direct", upstream, DIRECT, "none", gateway.MODEL, texts, streams,
                           direct_s, chunks)  # fmt: skip
        sampler = Sampler(gw.pid)
        sampler.start()
        cpu0 = gateway.tree_cpu(gw.pid)
        through = run_phase("gateway", gw_port, CHAT, key, gateway.MODEL, texts, streams,
                            duration, chunks)  # fmt: skip
        cpu = gateway.tree_cpu(gw.pid) - cpu0
        sampler.stop.set()
        sampler.join()
        if gw.poll() is not None:
            raise RuntimeError("the gateway exited:\n" + (tmp / "gateway.log").read_text()[-3000:])
    steady = [rss for t, rss, _ in sampler.samples if t >= warmup]
    start, end = steady[0], steady[-1]
    return {
        "streams": streams,
        "duration_s": duration,
        "warmup_s": warmup,
        "phases": {p.name: summary(p) for p in (direct, through)},
        "added_p50_ms": through.pct(through.latency_ms, 50) - direct.pct(direct.latency_ms, 50),
        "added_p99_ms": through.pct(through.latency_ms, 99) - direct.pct(direct.latency_ms, 99),
        "added_ttft_p99_ms": through.pct(through.ttft_ms, 99) - direct.pct(direct.ttft_ms, 99),
        "gateway_cpu_ms_per_request": cpu * 1000 / max(1, len(through.latency_ms)),
        "rss_start_mib": start / 2**20,
        "rss_end_mib": end / 2**20,
        "rss_max_mib": max(steady) / 2**20,
        "rss_growth": (end - start) / start,
        "rss_mib_every_5s": [round(rss / 2**20, 1) for _, rss, _ in sampler.samples[4::5]],
        "threads_every_5s": [n for _, _, n in sampler.samples[4::5]],
        "errors": sum(through.errors.values()),
        "load_before": load,
    }


def summary(p: Phase) -> dict:
    return {
        "requests": len(p.latency_ms),
        "req_per_s": len(p.latency_ms) / p.seconds if p.seconds else 0.0,
        "errors": dict(p.errors),
        "p50_ms": p.pct(p.latency_ms, 50),
        "p99_ms": p.pct(p.latency_ms, 99),
        "ttft_p50_ms": p.pct(p.ttft_ms, 50),
        "ttft_p99_ms": p.pct(p.ttft_ms, 99),
    }


def report(r: dict) -> None:
    print(f"soak: {r['streams']} concurrent streams, {r['duration_s']:.0f} s through the gateway "
          f"(steady state from {r['warmup_s']:.0f} s)")  # fmt: skip
    print("| phase | requests | req/s | errors | p50 ms | p99 ms | TTFT p50 ms | TTFT p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in r["phases"].items():
        errs = sum(s["errors"].values())
        cells = [s["requests"], f"{s['req_per_s']:.0f}", errs]
        cells += [f"{s[k]:.1f}" for k in ("p50_ms", "p99_ms", "ttft_p50_ms", "ttft_p99_ms")]
        print(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
    print()
    print("| measure | value | target | met |")
    print("|---|---:|---|---|")
    growth = r["rss_growth"] * 100
    rows = (
        ("errors", f"{r['errors']}", "0", r["errors"] == 0),
        ("added latency p50 (ms)", f"{r['added_p50_ms']:.1f}", "reported", True),
        ("added latency p99 (ms)", f"{r['added_p99_ms']:.1f}", "reported", True),
        ("added TTFT p99 (ms)", f"{r['added_ttft_p99_ms']:.1f}", "reported", True),
        ("gateway CPU per request (ms)", f"{r['gateway_cpu_ms_per_request']:.2f}", "reported",
         True),
        ("gateway RSS, steady start -> end (MiB)",
         f"{r['rss_start_mib']:.0f} -> {r['rss_end_mib']:.0f} (max {r['rss_max_mib']:.0f})",
         "", True),
        ("gateway RSS growth (%)", f"{growth:+.2f}", "< 5", r["rss_growth"] < GROWTH_LIMIT),
    )  # fmt: skip
    for name, value, target, met in rows:
        print(f"| {name} | {value} | {target} | {'yes' if met else 'NO'} |")
    gw_errors = r["phases"]["gateway"]["errors"]
    if gw_errors:
        print(f"errors by kind: {gw_errors}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300.0, help="seconds through the gateway")
    ap.add_argument("--streams", type=int, default=200, help="concurrent streams")
    ap.add_argument("--warmup-s", type=float, help="steady state from (default: 1/10, >= 10 s)")
    ap.add_argument("--direct-s", type=float, help="s at the upstream (default: 1/10, 5-30 s)")
    ap.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    ap.add_argument("--chunks", type=int, default=16, help="content chunks per stream")
    ap.add_argument("--chunk-delay-ms", type=float, default=20.0)
    ap.add_argument("--port-base", type=int, default=18321)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for the gateway (repeatable)")  # fmt: skip
    args = ap.parse_args()
    warmup = args.warmup_s if args.warmup_s is not None else max(10.0, args.duration / 10)
    direct_s = (
        args.direct_s if args.direct_s is not None else min(30.0, max(5.0, args.duration / 10))
    )
    print(f"load average before: {os.getloadavg()}", flush=True)
    r = soak(args.duration, args.streams, warmup, direct_s, args.workers, args.chunks,
             args.chunk_delay_ms, args.port_base,
             dict(kv.split("=", 1) for kv in args.gateway_env))  # fmt: skip
    report(r)
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    ok = r["errors"] == 0 and r["rss_growth"] < GROWTH_LIMIT
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
