"""A small fake OpenAI-compatible upstream (vLLM-shaped) on a real socket, for unit tests only.

Each instance serves /health, /v1/models, /metrics and /v1/chat/completions on 127.0.0.1 with a
behaviour the test sets (`mode`), and records what happened (requests, chunks sent, disconnects).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeUpstream:
    def __init__(self, served: str = "m", port: int = 0) -> None:
        self.served = served
        self.mode = "ok"  # ok | error_flat | error_nested | error_500 | error | die_mid | finish_X
        self.error: tuple[int, dict[str, Any]] = (400, {})  # mode "error": this status and body
        self.health_status = 200
        self.health_delay_s = 0.0
        self.chunks = 5
        self.chunk_delay_s = 0.0
        self.first_delay_s = 0.0
        self.metrics_text = ""
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        self.chunks_sent = 0
        self.disconnected = threading.Event()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def completion(self, n: int) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": self.served,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * n},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n},
        }  # fmt: skip

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/health":
                    time.sleep(fake.health_delay_s)
                    self.send_response(fake.health_status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                elif self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": fake.served}]})
                elif self.path == "/metrics":
                    data = fake.metrics_text.encode()
                    self.send_response(200)
                    self.send_header("content-type", "text/plain")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._json(404, {"error": {"message": "not found", "type": "NotFound",
                                               "code": 404}})  # fmt: skip

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with fake.lock:
                    fake.requests += 1
                    fake.bodies.append(body)
                mode = fake.mode
                if mode == "error_flat":
                    return self._json(400, {"object": "error", "message": "bad temperature",
                                            "type": "BadRequestError", "param": "temperature",
                                            "code": 400})  # fmt: skip
                if mode == "error_nested":
                    return self._json(400, {"error": {"message": "This model's maximum context "
                                            "length is 64 tokens.", "type": "BadRequestError",
                                            "param": None, "code": 400}})  # fmt: skip
                if mode == "error":
                    return self._json(*fake.error)
                if mode == "error_500":
                    return self._json(
                        500,
                        {
                            "error": {
                                "message": "engine dead",
                                "type": "InternalServerError",
                                "code": 500,
                            }
                        },
                    )
                if not body.get("stream"):
                    time.sleep(fake.first_delay_s)
                    return self._json(200, fake.completion(fake.chunks))
                self._stream(mode)

            def _stream(self, mode: str) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                time.sleep(fake.first_delay_s)
                try:
                    for i in range(fake.chunks):
                        if mode == "die_mid" and i == 2:
                            self.connection.close()  # like a killed engine: no [DONE]
                            return
                        if mode.startswith("finish_") and i == 2:
                            # vLLM's end for a request its engine core failed or aborted: a
                            # chunk whose finish_reason says so, then a clean [DONE]
                            reason = mode[len("finish_") :]
                            end = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                                   "choices": [{"index": 0, "delta": {"content": ""},
                                                "finish_reason": reason}]}  # fmt: skip
                            frames = f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"
                            self.wfile.write(frames.encode())
                            self.wfile.flush()
                            break
                        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                                 "choices": [{"index": 0, "delta": {"content": "x"}}]}  # fmt: skip
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        with fake.lock:
                            fake.chunks_sent += 1
                        time.sleep(fake.chunk_delay_s)
                    usage = {"prompt_tokens": 3, "completion_tokens": fake.chunks,
                             "total_tokens": 3 + fake.chunks}  # fmt: skip
                    last = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                            "choices": [], "usage": usage}  # fmt: skip
                    self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
                    self.wfile.flush()
                except OSError:
                    fake.disconnected.set()
                self.close_connection = True

        return Handler
