"""A fast OpenAI-compatible upstream for gateway benchmarks (never for proving features).

The tiny vLLM engine on 2 CPU cores would be the bottleneck of a gateway benchmark, so the gateway
benchmark fronts this instead: an asyncio HTTP/1.1 server with keep-alive that answers
`POST /v1/chat/completions` (JSON, or SSE with a final usage chunk when `stream` is true),
`GET /health`, `GET /v1/models` and `GET /metrics` the way vLLM's server shapes them.

Run: python benchmarks/fake_upstream.py --port 18301 [--chunks 8] [--chunk-delay-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

MODEL = "bench/upstream"


def _completion(model: str, n_out: int) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "tok " * n_out},
                "finish_reason": "length",
                "stop_reason": None,
                "token_ids": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": n_out, "total_tokens": 12 + n_out},
        # vLLM's engine-internal fields, null unless asked for (the gateway removes them)
        "prompt_logprobs": None,
        "prompt_token_ids": None,
        "kv_transfer_params": None,
    }
    return json.dumps(body).encode()


def _chunk(model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    c: dict = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": []
        if usage
        else [
            {
                "index": 0,
                "delta": delta,
                "finish_reason": finish,
                "stop_reason": None,
                "token_ids": None,
            }
        ],
    }
    if usage is not None:
        c["usage"] = usage
    data = b"data: " + json.dumps(c).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream(asyncio.Protocol):
    chunks = 8
    chunk_delay = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1")
            lines = head.split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            total = head_end + 4 + length
            if len(self.buf) < total:
                return
            body = self.buf[head_end + 4 : total]
            self.buf = self.buf[total:]
            self.handle(method, path, body)

    def respond(self, status: str, ctype: str, payload: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (status.encode(), ctype.encode(), len(payload), payload)
        )

    def handle(self, method: str, path: str, body: bytes) -> None:
        if method == "POST" and path.endswith("/chat/completions"):
            req = json.loads(body or b"{}")
            model = req.get("model", MODEL)
            n_out = min(int(req.get("max_tokens") or self.chunks), self.chunks)
            if req.get("stream"):
                asyncio.get_running_loop().create_task(self.stream(model, n_out))
            else:
                self.respond("200 OK", "application/json", _completion(model, n_out))
        elif path == "/health":
            self.respond("200 OK", "text/plain", b"")
        elif path == "/v1/models":
            models = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
            self.respond("200 OK", "application/json", json.dumps(models).encode())
        elif path == "/metrics":
            self.respond("200 OK", "text/plain", b"vllm:num_requests_running 0\n")
        else:
            self.respond("404 Not Found", "application/json", b'{"error":{"message":"not found"}}')

    async def stream(self, model: str, n_out: int) -> None:
        w = self.transport.write
        w(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        w(_chunk(model, {"role": "assistant", "content": ""}))
        for i in range(n_out):
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            w(_chunk(model, {"content": "tok "}, "length" if i == n_out - 1 else None))
        usage = {"prompt_tokens": 12, "completion_tokens": n_out, "total_tokens": 12 + n_out}
        w(_chunk(model, {}, usage=usage))
        done = b"data: [DONE]\n\n"
        w(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18301)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--chunk-delay-ms", type=float, default=0.0)
    args = ap.parse_args()
    Upstream.chunks = args.chunks
    Upstream.chunk_delay = args.chunk_delay_ms / 1000
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Upstream, args.host, args.port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
