"""Pydantic wire models: what the gateway validates and what the OpenAPI document describes.

OpenAI field names are never renamed. Request models allow extra fields (like vLLM's own
`OpenAIBaseModel`); a chat request's top-level fields beyond OpenAI's reach the engine only where
the model's catalog entry allows them (`serving.engines.fields`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from serving.router_client import OptimizeMode  # InferRoute's one definition of the modes

INT32_MAX = 2**31 - 1  # an Integer column (PostgreSQL int4): per-key limits
INT64_MAX = 2**63 - 1  # a BigInteger column (and any SQLite integer): ids, cursors, micro-credits
KEY_ID_PATTERN = r"^key_[0-9a-f]{16}$"  # serving.keys.create
UNIX_S_MAX = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime holds
# RFC 3339 date-time (JSON Schema's `format: date-time`): a date, `T`, a time, and an offset
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _instant(value: Any) -> Any:
    """A query instant: RFC 3339 with its offset, or whole unix seconds. Anything else (a naive
    time, a bare date, fractional or negative seconds) is refused rather than guessed at."""
    if isinstance(value, datetime) or not isinstance(value, str):
        return value
    if value.isascii() and value.isdigit():
        seconds = int(value)
        if seconds > UNIX_S_MAX:
            raise ValueError(f"unix seconds must be at most {UNIX_S_MAX}")
        return datetime.fromtimestamp(seconds, UTC)
    if not RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time with an offset, or unix seconds")
    if value[17:19] == "60":  # a leap second (RFC 3339 allows it; datetime does not): its :59
        value = value[:17] + "59" + value[19:]
    return datetime.fromisoformat(value.upper())


Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "minimum": 0, "maximum": UNIX_S_MAX},
            ]
        }
    ),
]


class OpenModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class StrictOpenModel(BaseModel):
    """A request part: extra fields allowed, declared ones of exactly their JSON type (strict:
    `"include_usage": "yes"` is a 400, not True)."""

    model_config = ConfigDict(extra="allow", strict=True)


class ChatMessage(StrictOpenModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class RoutingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model_pool: list[str] | None = Field(default=None, min_length=1)
    optimize: OptimizeMode | None = None
    task: str | None = None


class StreamOptions(StrictOpenModel):
    include_usage: bool = False


def integral(value: Any) -> Any:
    """For an integer field of a strict model. JSON has one number type: `2.0` is the integer 2
    (as JSON Schema's `integer` says), while a string, a bool or `2.5` stays an error. An integer
    written beyond 64 bits reaches here as a float (orjson) that may round onto a bound: refused."""
    if type(value) is float and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


# ChatCompletionRequest's integer fields (`chat` passes the validated ints upstream, not 2.0)
INTEGRAL = ("max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs")


class ChatCompletionRequest(OpenModel):
    """OpenAI's chat completion request. Other OpenAI parameters (`logit_bias`, `tools`' relatives,
    `metadata`, ...) pass to the engine as sent; any other field (an engine's own parameter such as
    vLLM's `top_k`) is a 400 `unsupported_parameter` unless the model's catalog entry lists it in
    `engine_params`."""

    # strict: JSON types as documented ("stream": "yes" or "max_tokens": "10" are 400s, not coerced)
    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1, description='A model id (e.g. "Qwen/Qwen3-14B") or "auto"')
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    n: int = Field(default=1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-INT64_MAX - 1, le=INT64_MAX)  # as vLLM bounds it
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None
    routing: RoutingOptions | None = Field(default=None, description="InferRoute overrides")

    _integral = field_validator(*INTEGRAL, mode="before")(integral)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RoutingInfo(BaseModel):
    task: str
    complexity: str
    confidence: float
    model: str
    optimize: str
    routing_time_ms: float
    router_version: str
    fallback_from: str | None = None
    # the task confidence was low: the router decided on general (task-agnostic) model quality
    low_confidence: bool = False


class RoutingFrame(RoutingInfo):
    """The first frame of a routed (`model: "auto"`) stream: the routing decision."""

    id: str
    object: Literal["routing"] = "routing"
    created: int
    choices: list[Any] = Field(max_length=0)


class ChatChoice(OpenModel):
    index: int
    message: dict[str, Any]
    finish_reason: str | None = None


class ChatCompletion(OpenModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    routing: RoutingInfo | None = None


class ChatCompletionChunk(OpenModel):
    """One `data:` frame of a stream (`object` is "routing" for the first frame of auto routing)."""

    id: str
    object: Literal["chat.completion.chunk", "routing"]
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage | None = None


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str
    context_length: int | None = None
    pricing: dict[str, int] | None = None


class RouterInfo(BaseModel):
    """The router behind `model: "auto"`: the registry version the alias points at, or the
    untrained catalog-prior router (`trained: false`) when nothing has been promoted."""

    name: str
    alias: str
    version: str | None
    trained: bool
    router_version: str | None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]
    router: RouterInfo | None = None


class ModelHealth(BaseModel):
    model: str
    status: Literal["ready", "loading", "unavailable"]


CAPTURE_RATE = (
    "Opt-in traffic capture: the share of this key's requests (0-1) whose messages, routing "
    "decision and answer are stored for the account (docs/traffic.md); 0, the default, is off"
)
COMPARE_RATE = (
    "The share (0-1) of captured `auto` requests also answered by another model of the pool, "
    "billed to the operator's evaluation account; null: the gateway's default"
)


class KeyCreate(BaseModel):
    # strict, as every JSON body: `"rpm_limit": true` is a 400, not a limit of 1 (found by fuzzing)
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=200)
    model_pool: list[str] = Field(default_factory=list)
    optimize_mode: OptimizeMode = "balanced"
    rpm_limit: int | None = Field(default=None, ge=1, le=INT32_MAX)
    tpm_limit: int | None = Field(default=None, ge=1, le=INT32_MAX)
    capture_rate: float = Field(default=0.0, ge=0, le=1, description=CAPTURE_RATE)
    compare_rate: float | None = Field(default=None, ge=0, le=1, description=COMPARE_RATE)

    _integral = field_validator("rpm_limit", "tpm_limit", mode="before")(integral)


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    model_pool: list[str] | None = None
    optimize_mode: OptimizeMode | None = None
    capture_rate: float | None = Field(default=None, ge=0, le=1, description=CAPTURE_RATE)
    compare_rate: float | None = Field(default=None, ge=0, le=1, description=COMPARE_RATE)


class KeyOut(BaseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    prefix: str
    model_pool: list[str]
    optimize_mode: str
    rpm_limit: int | None
    tpm_limit: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    revoked_at: datetime | None
    parent_key_id: str | None = Field(
        default=None, description="The API key that created this one (None: dashboard or CLI)"
    )
    capture_rate: float = Field(default=0.0, description=CAPTURE_RATE)
    compare_rate: float | None = Field(default=None, description=COMPARE_RATE)


class KeyCreated(KeyOut):
    key: str = Field(description="The raw key. Shown only once.")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyOut]
    has_more: bool = False
    next_cursor: str | None = None


class KeyPageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=100)
    cursor: str | None = Field(
        default=None, pattern=KEY_ID_PATTERN, description="next_cursor of the previous page"
    )


class Credits(BaseModel):
    object: Literal["credits"] = "credits"
    balance: str = Field(description="Available credits, decimal")
    balance_micros: int = Field(description="Deposits minus deductions, micro-credits")
    reserved_micros: int = Field(description="Held by requests in flight")
    available_micros: int


class Transaction(BaseModel):
    id: int
    object: Literal["credit_transaction"] = "credit_transaction"
    kind: Literal["deposit", "reservation", "release", "deduction"]
    amount_micros: int
    reservation_id: str | None
    description: str | None
    created_at: datetime


class TransactionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Transaction]
    has_more: bool
    next_cursor: int | None


class UsageRecord(BaseModel):
    id: str
    object: Literal["usage"] = "usage"
    created_at: datetime
    key_id: str | None
    requested_model: str
    served_model: str | None
    routing_task: str | None
    routing_complexity: str | None
    routing_confidence: float | None
    router_version: str | None
    fallback_from: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_micros: int
    latency_ms: float | None
    ttft_ms: float | None
    routing_time_ms: float | None
    stream: bool
    status: str
    error_type: str | None


class UsageList(BaseModel):
    object: Literal["list"] = "list"
    data: list[UsageRecord]
    has_more: bool
    next_cursor: int | None


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=20, ge=1, le=100)
    cursor: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="next_cursor of the previous page"
    )


class UsageQuery(PageQuery):
    start: Instant | None = Field(
        default=None, description="RFC 3339 date-time with offset, or unix seconds; inclusive"
    )
    end: Instant | None = Field(
        default=None, description="RFC 3339 date-time with offset, or unix seconds; exclusive"
    )
    model: str | None = Field(default=None, description="requested or served model id")
    key_id: str | None = None


class LoginRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


class Session(BaseModel):
    object: Literal["session"] = "session"
    email: str
    csrf_token: str = Field(description="Send as X-CSRF-Token on state-changing requests")
    expires_at: datetime


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorBody


# ---- learning from traffic (serving/traffic.py; the contract with the evals harness) ----------

Winner = Literal["a", "b", "tie"]


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    request_id: str = Field(
        min_length=1, max_length=40, description="The X-Request-Id the completion carried"
    )
    rating: int = Field(description="1: good, -1: bad", json_schema_extra={"enum": [1, -1]})
    comment: str | None = Field(default=None, max_length=4000)

    @field_validator("rating")
    @classmethod
    def _one_or_minus_one(cls, v: int) -> int:
        if v not in (1, -1):  # (strict: true, "1" and 1.0 are refused before this)
            raise ValueError("must be 1 (good) or -1 (bad)")
        return v


class FeedbackOut(BaseModel):
    id: str
    object: Literal["feedback"] = "feedback"
    created_at: datetime
    request_id: str
    key_id: str | None
    model: str | None
    task: str | None = Field(description="The routing decision's task (null unless `auto`)")
    routing: dict[str, Any] | None
    messages: list[dict[str, Any]] | None = Field(
        description="The request's messages, only when it was captured (and still is)"
    )
    rating: int
    comment: str | None


class PairVote(BaseModel):
    winner: Winner
    created_at: datetime
    source: str


class PairVerdict(BaseModel):
    judge: str
    winner: Winner
    created_at: datetime
    detail: dict[str, Any] | None = None


class PairOut(BaseModel):
    id: str
    object: Literal["pair"] = "pair"
    created_at: datetime
    request_id: str
    key_id: str | None
    messages: list[dict[str, Any]]
    task: str | None
    routing: dict[str, Any] | None
    model_a: str
    answer_a: str
    model_b: str
    answer_b: str
    served: Literal["a", "b"] = Field(description="Which side is the answer the user received")
    votes: list[PairVote]
    verdicts: list[PairVerdict]


class PairList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PairOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: done")


class PairQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, pattern=r"^\d{1,18}$", description="next_cursor")
    unjudged_by: str | None = Field(
        default=None, max_length=200, description="Only pairs with no verdict by this judge"
    )
    unvoted: bool = Field(default=False, description="Only pairs no person has voted on")


class VerdictCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    judge: str = Field(min_length=1, max_length=200, description="The judge model's id")
    winner: Winner
    detail: dict[str, Any] | None = None


class VerdictOut(BaseModel):
    object: Literal["pair_verdict"] = "pair_verdict"
    pair_id: str
    judge: str
    winner: Winner
    created_at: datetime
    detail: dict[str, Any] | None


class VoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    winner: Winner


class VoteOut(BaseModel):
    object: Literal["pair_vote"] = "pair_vote"
    pair_id: str
    winner: Winner
    source: str
    created_at: datetime


class ExportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: Instant | None = Field(
        default=None,
        description="RFC 3339 date-time with offset, or unix seconds: records made from then on",
    )
