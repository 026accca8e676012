"""POST /chat/completions: auth -> validate -> resolve/route -> rate limit -> reserve -> engine ->
settle. Errors before the first byte are JSON; after it, an error frame and `[DONE]`.

`chat_completions()` is a lean view (`serving.front`): it reads the request from the WSGI environ
and returns a `Reply`, without Flask's request dispatch on the hot path; `Front` gives the request
its id and log line and renders what it raises, as for every other route."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from itertools import chain
from typing import Any

import orjson
from flask import current_app, g

from serving import bell, compare, db, ledger, ratelimit, routing, traffic
from serving.api import bp
from serving.api.openapi import doc, link
from serving.auth import Principal, authenticate
from serving.engines import fields
from serving.engines.base import CatalogModel, EngineError
from serving.errors import ApiError, error_payload, from_engine_error
from serving.front import JSON_HEADERS, Reply, lean
from serving.incoming import Incoming
from serving.protocol import INTEGRAL, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest

logger = logging.getLogger("serving.requests")

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class Call:
    """One billed request: its reservation and what it has cost so far."""

    def __init__(
        self,
        principal: Principal,
        req: ChatCompletionRequest,
        resolved: routing.Resolved,
        hold: int,
        metrics: Any = None,
    ) -> None:
        # the reservation's and the usage row's id: the request's own X-Request-Id, so a client
        # names its request (feedback, the dashboard's request view) by the id it was given
        self.id = self.request_id = g.request_id
        self.principal = principal
        self.req = req
        self.resolved = resolved
        self.hold = hold
        self.t0 = g.t0
        self.answer: list[str] | None = None  # the answer's text so far, when captured
        self.body: dict[str, Any] = {}  # the request body, kept when captured
        self.ttft_ms: float | None = None
        self.engine_s = 0.0  # waiting on the engine: the whole answer (JSON), its first chunk
        self.metrics = metrics  # serving.metrics.Recorder, None when metrics are off
        self.fields: dict[str, Any] | None = None  # for the request's log line, once settled
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.settled = False
        self.tokens = 0  # worst-case tokens counted against the key's TPM until settled
        self.limits = ratelimit.get().fused(principal.key)
        self.ring = bell.for_rows(current_app)  # the live events of other hosts, if any

    @property
    def model(self) -> CatalogModel:
        return self.resolved.model

    def settle(self, status: str, error_type: str | None = None) -> None:
        if self.settled:
            return
        self.settled = True
        m = self.model
        cost = ledger.cost_micros(
            self.prompt_tokens,
            self.completion_tokens,
            m.input_price_micros_per_mtok,
            m.output_price_micros_per_mtok,
        )
        latency = (time.perf_counter() - self.t0) * 1000
        d = self.resolved.decision
        usage = {
            "id": self.id,
            "account_id": self.principal.account_id,
            "key_id": self.principal.key_id,
            "requested_model": self.req.model,
            "served_model": m.id,
            "routing_task": d.task if d else None,
            "routing_complexity": d.complexity if d else None,
            "routing_confidence": float(d.confidence) if d else None,
            "router_version": d.router_version if d else None,
            "fallback_from": self.resolved.fallback_from,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "latency_ms": round(latency, 3),
            "ttft_ms": round(self.ttft_ms, 3) if self.ttft_ms is not None else None,
            "routing_time_ms": float(d.routing_time_ms) if d else None,
            "stream": self.req.stream,
            "status": status,
            "error_type": error_type,
        }
        capture = None
        if self.answer is not None and status == "success":  # opt-in capture (serving/traffic)
            capture = traffic.capture_row(
                self.request_id,
                self.principal.key_id,
                self.req.model,
                m.id,
                self.resolved.routing(),
                self.body["messages"],
                "".join(self.answer),
            )
        result = ledger.settle(
            self.id,
            self.principal.account_id,
            self.hold,
            cost,
            usage,
            limits=self.limits,
            capture=capture,
        )
        if self.ring is not None:
            self.ring(self.principal.account_id)
        if capture is not None and d is not None:
            self._maybe_compare(d)
        if self.principal.key is not None and self.limits is None:
            ratelimit.get().add_tokens(self.principal.key, usage["total_tokens"], self.tokens)
        # the request's log line (serving.front) carries these; the prompt never
        self.fields = {
            "usage_id": self.id,
            "model": m.id,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_micros": result.charged,
            "ttft_ms": usage["ttft_ms"],
            "outcome": status,
            "stream": self.req.stream,
            "routing_task": usage["routing_task"],
        }
        if self.metrics is not None:
            stream = bool(self.req.stream)
            ttft_s = self.ttft_ms / 1000 if self.ttft_ms is not None else None
            if stream:  # the gateway's part of the time to the first token
                added = ttft_s - self.engine_s if ttft_s is not None else None
            else:  # the gateway's part of the whole answer
                added = latency / 1000 - self.engine_s if status == "success" else None
            self.metrics.settled(
                m.id, stream, status, self.prompt_tokens, self.completion_tokens,
                result.charged, added, ttft_s,
            )  # fmt: skip

    def log_fields(self) -> dict[str, Any]:
        """What the request's log line says of this call: its settlement, or the model it was
        resolved to when it never reserved."""
        return self.fields if self.fields is not None else {"model": self.model.id}

    def _maybe_compare(self, d: Any) -> None:
        """Hand a sampled share of captured `auto` requests (`d`: the routing decision) to the
        comparison thread (`serving.compare`): after the answer, never in its way."""
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        key = self.principal.key
        rate = key.compare_rate if key is not None else None
        if not traffic.sampled(app.config["COMPARE_RATE"] if rate is None else rate):
            return
        job = compare.Job(
            self.request_id,
            self.principal.account_id,
            self.model.id,
            tuple(d.candidates),
            self.body,
            self.req,
        )
        compare.get(app).submit(job)

    def take_usage(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)

    def take_chunk_usage(
        self, usage: dict[str, Any], choices: list[dict[str, Any]], counts: dict[int, int]
    ) -> None:
        """A chunk's continuous usage stats: vLLM counts the tokens of the chunk's own choice
        (`n` > 1 streams interleave one chunk per choice), so what was delivered is the sum of each
        choice's latest count (`counts`, per choice index, kept by the stream)."""
        if len(choices) != 1:  # (not what vLLM sends): taken as the whole request's count
            self.take_usage(usage)
            return
        self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        counts[choices[0].get("index") or 0] = int(usage.get("completion_tokens") or 0)
        self.completion_tokens = sum(counts.values())


@bp.post("/chat/completions")  # type: ignore[type-var]  # a lean view: Front calls it, not Flask
@doc(
    "Create a chat completion (streaming with stream=true: text/event-stream of chunks)",
    body=ChatCompletionRequest,
    responses={200: ChatCompletion},
    stream=ChatCompletionChunk,
    errors=(400, 401, 402, 403, 404, 413, 429, 502),
    links={"Usage": link("get", "/usage"), "Credits": link("get", "/credits")},
)
@lean
def chat_completions(inc: Incoming) -> Reply:
    """One chat completion request (in the app context `Front` pushed, `g.t0` and `g.request_id`
    set)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    principal = g.principal = authenticate(cached=True, inc=inc)
    try:
        body = orjson.loads(inc.body(app.config.get("MAX_CONTENT_LENGTH")))
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    req = ChatCompletionRequest.model_validate(body)
    for name in INTEGRAL:  # an integral float (2.0) goes upstream as the int it was read as
        if type(body.get(name)) is float:
            body[name] = getattr(req, name)
    engines = app.extensions["engines"]
    resolved = routing.resolve(
        req,
        body["messages"],
        principal,
        engines,
        app.extensions.get("router"),
        int(app.config["MICROS_PER_CREDIT"]),
    )
    _check_params(req, resolved.model)
    metrics = app.extensions.get("metrics")
    d = resolved.decision
    if metrics is not None and d is not None:
        metrics.routed(str(d.task), resolved.model.id, str(d.optimize))
    call = g.call = Call(principal, req, resolved, 0, metrics)
    key = principal.key
    if key is not None and key.capture_rate and traffic.sampled(key.capture_rate):
        call.answer, call.body = [], body
    worst = routing.worst_case_tokens(
        req, body, resolved.model, int(app.config["MAX_OUTPUT_TOKENS_RESERVE"])
    )
    call.hold = routing.worst_case_micros(resolved.model, worst)
    if principal.key is not None:
        call.tokens = sum(worst)
        if call.limits is not None:  # counted by the ledger, inside the reservation
            call.limits = replace(call.limits, reserved=call.tokens)
        else:
            ratelimit.get().check_request(principal.key, call.tokens)
    _maybe_sweep()
    try:
        ledger.reserve(
            principal.account_id,
            principal.key_id,
            call.id,
            call.hold,
            app.config["RESERVATION_TTL_S"],
            limits=call.limits,
        )
    except BaseException:
        if principal.key is not None and call.limits is None:  # give the TPM reservation back
            ratelimit.get().add_tokens(principal.key, 0, call.tokens)
        raise
    if call.ring is not None:
        call.ring(principal.account_id)
    upstream = routing.upstream_body(body, resolved.model, req.stream)
    if req.stream:
        return _stream(call, engines, upstream)
    with _settled_on_failure(call):
        e0 = time.perf_counter()
        out = engines.complete(resolved.model.id, upstream)
        call.engine_s = time.perf_counter() - e0
    fields.strip(out, resolved.model)
    call.ttft_ms = (time.perf_counter() - call.t0) * 1000
    if out.get("usage"):
        call.take_usage(out["usage"])
    else:
        logger.warning("engine returned no usage for %s: billing the reservation", call.id)
        call.completion_tokens = req.max_tokens or 0
    if call.answer is not None:
        call.answer.append(traffic.message_text((out.get("choices") or [{}])[0].get("message")))
    call.settle("success")
    out["model"] = resolved.model.id
    info = resolved.routing()
    if info is not None:
        out["routing"] = info
    return Reply(200, {**JSON_HEADERS, **resolved.headers()}, orjson.dumps(out))


@contextmanager
def _settled_on_failure(call: Call) -> Iterator[None]:
    """Settle `call` as an error (the engine's type, else gateway_error) if its body raises."""
    try:
        yield
    except EngineError as e:
        call.settle("error", e.type)
        raise
    except BaseException:
        call.settle("error", "gateway_error")
        raise


def _check_params(req: ChatCompletionRequest, model: CatalogModel) -> None:
    name = fields.unsupported(req.model_extra, model)
    if name is not None:
        allowed = ", ".join(sorted(model.engine_params)) or "none"
        raise ApiError(
            400,
            f"Unrecognized request argument supplied: {name}. Parameters beyond OpenAI's reach "
            f"the engine only where the model's catalog entry lists them in `engine_params` "
            f"(`{model.id}` allows: {allowed}).",
            param=name,
            code="unsupported_parameter",
        )


def _stream(call: Call, engines: Any, upstream: dict[str, Any]) -> Reply:
    with _settled_on_failure(call):
        e0 = time.perf_counter()
        try:
            it = engines.stream(call.model.id, upstream)
            first = next(it)  # an engine failure before the first byte is still a JSON error
        except StopIteration:
            first = None
            it = iter(())
        call.engine_s = time.perf_counter() - e0
    headers = {**SSE_HEADERS, **call.resolved.headers()}
    replica = getattr(it, "replica", None)  # which of the model's replicas serves it, if told
    if replica is not None:
        headers["X-Inferbase-Replica"] = str(replica)
    return Reply(200, headers, _frames(call, it, first))


def _frames(call: Call, it: Iterator[dict[str, Any] | None], first: Any) -> Iterator[bytes]:
    want_usage = bool(call.req.stream_options and call.req.stream_options.include_usage)
    model = call.model
    model_id = model.id
    answer = call.answer  # captured: the answer's text (the first choice's) as it streams
    status, error_type = "cancelled", None
    counts: dict[int, int] = {}  # each choice's tokens so far, by its index
    try:
        info = call.resolved.routing()
        if info is not None:
            yield _routing_frame(call, info)
        for chunk in chain((first,), it):
            if chunk is None:
                yield b": keep-alive\n\n"
                continue
            fields.strip(chunk, model)
            usage = chunk.pop("usage", None)
            choices = chunk.get("choices")
            if not choices:
                if usage:
                    call.take_usage(usage)
                if usage and want_usage:  # the final usage chunk, only when the client asked
                    chunk["usage"] = usage
                    chunk["model"] = model_id
                    yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                continue
            if call.ttft_ms is None:
                call.ttft_ms = (time.perf_counter() - call.t0) * 1000
            if answer is not None:
                for choice in choices:
                    text = (choice.get("delta") or {}).get("content")
                    if text and not choice.get("index"):
                        answer.append(text)
            chunk["model"] = model_id
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            # counted once the server has written it (it asks for the next chunk only then): a
            # client that hung up is not billed for the chunk whose write failed
            if usage:
                call.take_chunk_usage(usage, choices, counts)
            elif _generated(choices):  # no usage stats upstream: a chunk of output is a token
                call.completion_tokens += 1
        status = "success"
    except EngineError as e:
        status, error_type = "error", e.type
        logger.warning("engine failed mid-stream (%s): %s", call.id, e.message)
        err = from_engine_error(e)
        payload = error_payload(err.message, err.type, err.param, err.code)
        yield b"data: " + orjson.dumps(payload) + b"\n\n"
    except Exception:
        status, error_type = "error", "gateway_error"
        logger.exception("stream failed (%s)", call.id)
        body = error_payload("Internal error while streaming.", "api_error", None, "internal_error")
        yield b"data: " + orjson.dumps(body) + b"\n\n"
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
        try:
            call.settle(status, error_type)
        except Exception:  # (the database stayed unreachable): the client still gets its end
            logger.exception("settlement failed (%s): its hold is released at expiry", call.id)
    yield b"data: [DONE]\n\n"


def _generated(choices: list[dict[str, Any]]) -> bool:
    """Whether a chunk carries generated output (not the role chunk or the finish chunk)."""
    for c in choices:
        delta = c.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"):
            return True
    return False


def _routing_frame(call: Call, info: dict[str, Any]) -> bytes:
    frame = {
        "id": "routing-" + call.id,
        "object": "routing",
        "created": int(time.time()),
        "choices": [],
        **info,
    }
    return b"data: " + orjson.dumps(frame) + b"\n\n"


_last_sweep = [0.0]


def _maybe_sweep() -> None:
    now = time.monotonic()
    if now - _last_sweep[0] < float(current_app.config["SWEEP_INTERVAL_S"]):
        return
    _last_sweep[0] = now
    engine = db.get_engine()
    ledger.release_expired(engine)
    traffic.sweep(engine, float(current_app.config["TRAFFIC_RETENTION_DAYS"]))
    storage = ratelimit.get().storage
    purge = getattr(storage, "purge_expired", None)
    if purge is not None:
        purge()
