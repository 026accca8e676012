"""Pydantic wire models: what the gateway validates and what the OpenAPI document describes.

OpenAI field names are never renamed. Request models allow extra fields (like vLLM's own
`OpenAIBaseModel`); a chat request's top-level fields beyond OpenAI's reach the engine only where
the model's catalog entry allows them (`serving.engines.fields`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.router_client import OptimizeMode  # InferRoute's one definition of the modes

INT32_MAX = 2**31 - 1  # an Integer column (PostgreSQL int4): per-key limits
INT64_MAX = 2**63 - 1  # a BigInteger column (and any SQLite integer): ids, cursors, micro-credits


class OpenModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(OpenModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class RoutingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_pool: list[str] | None = Field(default=None, min_length=1)
    optimize: OptimizeMode | None = None
    task: str | None = None


class StreamOptions(OpenModel):
    include_usage: bool = False


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


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    model_pool: list[str] = Field(default_factory=list)
    optimize_mode: OptimizeMode = "balanced"
    rpm_limit: int | None = Field(default=None, ge=1, le=INT32_MAX)
    tpm_limit: int | None = Field(default=None, ge=1, le=INT32_MAX)


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    model_pool: list[str] | None = None
    optimize_mode: OptimizeMode | None = None


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
        default=None, max_length=32, description="next_cursor of the previous page"
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
    start: datetime | None = Field(default=None, description="ISO 8601 or unix seconds, inclusive")
    end: datetime | None = Field(default=None, description="ISO 8601 or unix seconds, exclusive")
    model: str | None = Field(default=None, description="requested or served model id")
    key_id: str | None = None


class LoginRequest(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
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
