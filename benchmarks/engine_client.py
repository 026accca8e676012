"""Overhead of the engines client (VLLMEngines) per request, against a fast fake upstream.

Runs a minimal OpenAI-shaped upstream (raw ASGI on uvicorn, in a subprocess so its CPU is not
counted) and times, sequentially from one client thread:
  direct    - a pooled httpx.Client posting straight to the upstream (the floor),
  engines   - VLLMEngines.complete / .stream (replica pick, JSON, error checks, reader thread).
Prints p50/p99 latency, the added latency (engines - direct) and client CPU per request.

    python benchmarks/engine_client.py [--n 2000] [--port 18190]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.engines.base import CatalogModel  # noqa: E402
from serving.engines.vllm import VLLMEngines  # noqa: E402

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
    if b'"stream": true' in body:
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


def run(label: str, fn, n: int) -> dict[str, float]:
    for _ in range(50):
        fn()
    lat = []
    cpu0 = time.process_time()
    for _ in range(n):
        t = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - t) * 1000)
    cpu = (time.process_time() - cpu0) * 1000 / n
    return {"label": label, "p50": statistics.median(lat), "p99": pct(lat, 0.99), "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--port", type=int, default=18190)
    args = ap.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    src = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_upstream_{args.port}.py"
    src.write_text(UPSTREAM)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"{src.stem}:app", "--port", str(args.port),
         "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"],
        cwd=src.parent,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                httpx.get(url + "/health", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        sbody = {**body, "stream": True, "stream_options": {"include_usage": True}}
        direct = httpx.Client()
        raw = json.dumps(body).encode()
        sraw = json.dumps(sbody).encode()
        hdr = {"content-type": "application/json"}
        m = CatalogModel("m", 1, 1, 1024, replicas=(url,))
        eng = VLLMEngines([m], monitor_interval_s=5.0)

        def direct_complete():
            direct.post(url + "/v1/chat/completions", content=raw, headers=hdr).json()

        def direct_stream():
            with direct.stream(
                "POST", url + "/v1/chat/completions", content=sraw, headers=hdr
            ) as r:
                for line in r.iter_lines():
                    if line.startswith("data:") and line[5:].strip() != "[DONE]":
                        json.loads(line[5:])

        rows = [
            run("direct complete", direct_complete, args.n),
            run("engines complete", lambda: eng.complete("m", body), args.n),
            run("direct stream", direct_stream, args.n),
            run("engines stream", lambda: list(eng.stream("m", sbody)), args.n),
        ]
        print(f"{'':<18}{'p50 ms':>9}{'p99 ms':>9}{'client CPU ms/req':>20}")
        for r in rows:
            print(f"{r['label']:<18}{r['p50']:>9.3f}{r['p99']:>9.3f}{r['cpu']:>20.3f}")
        for kind, a, b in (("complete", rows[0], rows[1]), ("stream", rows[2], rows[3])):
            print(
                f"added by engines ({kind}): p50 {b['p50'] - a['p50']:+.3f} ms, "
                f"p99 {b['p99'] - a['p99']:+.3f} ms, CPU {b['cpu'] - a['cpu']:+.3f} ms/req"
            )
        eng.close()
    finally:
        server.terminate()
        server.wait(10)
        src.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
