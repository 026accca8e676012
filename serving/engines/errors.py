"""Turn what a vLLM server answers on failure into `EngineError`s.

vLLM has used two error bodies: the flat old one
``{"object": "error", "message": ..., "type": ..., "param": ..., "code": 400}`` and the nested
new one ``{"error": {"message": ..., "type": ..., "param": ..., "code": 400}}``. Its `code` is the
HTTP status (an int); OpenAI's `code` is a short string, so the int is replaced. A client error
(4xx) answers 400 (vLLM's 422 too) as OpenAI would: `type` invalid_request_error, `param` the
request field in OpenAI's terms (vLLM names the prompt `input_tokens`/`input_text`/`prompt`: that is
`messages`), and `code` `context_length_exceeded` (param `messages`), `invalid_value` (a bad
parameter) or `invalid_request`. An engine 404 (it does not serve the model the catalog names) is
the gateway's misconfiguration, not the client's: a 502 like anything else.
"""

from __future__ import annotations

import json
from typing import Any

from serving.engines.base import EngineError

_CONTEXT_MARKERS = ("maximum context length", "context length", "max_model_len", "too long")
# vLLM's names for request parts that OpenAI calls `messages`
_PROMPT_PARAMS = {"input_tokens", "input_text", "prompt", "prompt_embeds", "input"}


def _fields(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            return inner
        if isinstance(inner, str):  # some proxies: {"error": "text"}
            return {"message": inner}
        if "message" in body or body.get("object") == "error":
            return body
    return {}


def error_from_body(status: int, content: bytes | str, model_id: str) -> EngineError:
    """An upstream HTTP error response (status >= 400) as an EngineError."""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    f = _fields(body)
    message = str(f.get("message") or text.strip()[:500] or f"engine answered HTTP {status}")
    param = f.get("param") if isinstance(f.get("param"), str) else None
    code = f.get("code") if isinstance(f.get("code"), str) else None
    if 400 <= status < 500 and status not in (404, 408, 429):
        if param in _PROMPT_PARAMS:
            param = "messages"
        if code is None:
            if any(m in message.lower() for m in _CONTEXT_MARKERS):
                code, param = "context_length_exceeded", "messages"  # as OpenAI reports it
            else:
                code = "invalid_value" if param else "invalid_request"
        client_status = 400 if status == 422 else status
        return EngineError(
            message, status=client_status, type="invalid_request_error", code=code, param=param
        )
    if status == 429:
        return EngineError(message, status=429, type="rate_limit_error", code="engine_overloaded")
    return EngineError(
        f"engine for {model_id} failed (HTTP {status}): {message}",
        status=502,
        type="upstream_error",
        code="backend_error",
        retry_after=5 if status == 503 else None,
    )


# finish reasons with which vLLM ends a request that did not complete: its engine core failed
# ("error": a retryable internal error, vLLM's own invariant is a 500) or aborted it ("abort": the
# engine shutting down or dying; the gateway never aborts a stream it still reads)
FAILED_FINISHES = frozenset({"error", "abort"})


def error_from_frame(frame: dict[str, Any], model_id: str) -> EngineError | None:
    """An error sent inside an SSE stream (``data: {"error": {...}}``), or a chunk ending the
    request with a failed finish reason; None for a normal chunk."""
    failed = [
        c.get("finish_reason")
        for c in frame.get("choices") or ()
        if isinstance(c, dict) and c.get("finish_reason") in FAILED_FINISHES
    ]
    if failed:
        message = f"it ended the request with finish_reason {failed[0]!r}"
    elif "error" in frame or frame.get("object") == "error":
        message = str(_fields(frame).get("message") or "engine error")
    else:
        return None
    return EngineError(
        f"engine for {model_id} failed mid-stream: {message}",
        status=502,
        type="upstream_error",
        code="backend_error",
    )
