"""CPU per request of the engine client: serving.engines.wire against the libraries that do the job.

Runs a minimal OpenAI-shaped upstream (raw ASGI on uvicorn, in a subprocess so its CPU is not
counted) and sends it, sequentially from one client thread, the same JSON POST (a JSON answer) and
the same streamed POST (8 SSE chunks and a usage chunk, chunked transfer encoding) through
  wire      - serving.engines.wire.Pool (hand-written HTTP/1.1, what the gateway uses),
  urllib3   - urllib3.HTTPConnectionPool (raw body bytes, no decoding),
  httpcore  - httpcore.ConnectionPool (httpx's transport; raw body bytes),
  httpx     - httpx.Client (what health probes use),
  engines   - VLLMEngines.complete / .stream over wire (replica pick, JSON, error checks).
The cases alternate in rounds (load changes on a shared machine hit them alike); each row is the
median over the rounds of the client's process CPU time per request, with latency p50/p99.

    python benchmarks/engine_client.py [--n 4000] [--rounds 8] [--port 19310]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpcore
import httpx
import orjson
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.engines.base import CatalogModel  # noqa: E402
from serving.engines.vllm import VLLMEngines  # noqa: E402
from serving.engines.wire import Pool  # noqa: E402

UPSTREAM = r"""
import json
COMPLETION = json.dumps({"id": "chatcmpl-b", "object": "chat.completion", "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()
CHUNK = b"data: " + json.dumps({"id": "chatcmpl-b", "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"content": "x"}}]}).encode() + b"\n\n"
USAGE = b"data: " + json.dumps({"id": "chatcmpl-b", "object": "chat.completion.chunk",
    "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}}
    ).encode() + b"\n\ndata: [DONE]\n\n"
MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    if scope["path"] == "/v1/models":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": MODELS})
        return
    if scope["path"] in ("/health", "/metrics"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if b'"stream":true' in body.replace(b" ", b""):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for _ in range(8):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": USAGE})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": COMPLETION})
"""


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def interleaved(
    cases: list[tuple[str, Callable[[], object]]], n: int, rounds: int
) -> list[dict[str, float | str]]:
    """Run the cases in alternation, `n // rounds` requests each per round: per case the median
    over rounds of CPU ms per request, and the latency p50/p99 over all requests."""
    for _, fn in cases:
        for _ in range(50):
            fn()
    lat: dict[str, list[float]] = {label: [] for label, _ in cases}
    cpu: dict[str, list[float]] = {label: [] for label, _ in cases}
    per = max(1, n // rounds)
    for _ in range(rounds):
        for label, fn in cases:
            c0 = time.process_time()
            for _ in range(per):
                t = time.perf_counter()
                fn()
                lat[label].append((time.perf_counter() - t) * 1000)
            cpu[label].append((time.process_time() - c0) * 1000 / per)
    return [
        {
            "label": label,
            "p50": statistics.median(lat[label]),
            "p99": pct(lat[label], 0.99),
            "cpu": statistics.median(cpu[label]),
        }
        for label, _ in cases
    ]


def start_upstream(port: int) -> tuple[subprocess.Popen[bytes], Path]:
    src = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_upstream_{port}.py"
    src.write_text(UPSTREAM)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"{src.stem}:app", "--port", str(port),
         "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"],
        cwd=src.parent,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/health", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return server, src


def cases(port: int) -> tuple[list[tuple[str, Callable[[], object]]], Callable[[], None]]:
    """The benchmark's cases against an upstream on `port`, and a function closing their pools."""
    url = f"http://127.0.0.1:{port}"
    path = "/v1/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    sbody = {**body, "stream": True, "stream_options": {"include_usage": True}}
    raw, sraw = json.dumps(body).encode(), json.dumps(sbody).encode()
    hdr = {"content-type": "application/json"}
    wire = Pool(url, 5.0, 60.0)
    u3 = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=4, retries=False, timeout=60.0)
    hc = httpcore.ConnectionPool(max_connections=4)
    hx = httpx.Client()
    eng = VLLMEngines([CatalogModel("m", 1, 1, 1024, replicas=(url,))], monitor_interval_s=5.0)

    def wire_complete() -> object:
        return orjson.loads(wire.post(path, raw).read())

    def wire_stream() -> None:
        for _ in wire.post(path, sraw, "text/event-stream").iter_raw(5.0):
            pass

    def urllib3_complete() -> object:
        return orjson.loads(u3.urlopen("POST", path, body=raw, headers=hdr).data)

    def urllib3_stream() -> None:
        r = u3.urlopen("POST", path, body=sraw, headers=hdr, preload_content=False)
        for _ in r.stream(65536):
            pass
        r.release_conn()

    def httpcore_complete() -> object:
        return orjson.loads(hc.request("POST", url + path, content=raw, headers=hdr).content)

    def httpcore_stream() -> None:
        with hc.stream("POST", url + path, content=sraw, headers=hdr) as r:
            for _ in r.iter_stream():
                pass

    def httpx_complete() -> object:
        return orjson.loads(hx.post(url + path, content=raw, headers=hdr).content)

    def httpx_stream() -> None:
        with hx.stream("POST", url + path, content=sraw, headers=hdr) as r:
            for _ in r.iter_raw():
                pass

    def close() -> None:
        wire.close()
        u3.close()
        hc.close()
        hx.close()
        eng.close()

    return [
        ("wire complete", wire_complete),
        ("urllib3 complete", urllib3_complete),
        ("httpcore complete", httpcore_complete),
        ("httpx complete", httpx_complete),
        ("engines complete", lambda: eng.complete("m", body)),
        ("wire stream", wire_stream),
        ("urllib3 stream", urllib3_stream),
        ("httpcore stream", httpcore_stream),
        ("httpx stream", httpx_stream),
        ("engines stream", lambda: list(eng.stream("m", sbody))),
    ], close


def compare(n: int, rounds: int, port: int) -> list[dict[str, float | str]]:
    server, src = start_upstream(port)
    try:
        todo, close = cases(port)
        try:
            return interleaved(todo, n, rounds)
        finally:
            close()
    finally:
        server.terminate()
        server.wait(10)
        src.unlink(missing_ok=True)


def print_rows(rows: list[dict[str, float | str]]) -> None:
    print(f"{'':<20}{'p50 ms':>9}{'p99 ms':>9}{'client CPU ms/req':>20}")
    for r in rows:
        print(f"{r['label']:<20}{r['p50']:>9.3f}{r['p99']:>9.3f}{r['cpu']:>20.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--port", type=int, default=19310)
    args = ap.parse_args()
    print_rows(compare(args.n, args.rounds, args.port))


if __name__ == "__main__":
    main()
