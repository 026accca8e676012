"""The contract between the gateway (auth, billing, chat endpoint) and the engines behind it.

The chat endpoint only ever talks to an `Engines` object (``app.extensions["engines"]``). Production
and the local demo use the vLLM implementation in this package; unit tests may pass a fake through
``create_app({"ENGINES": ...})``. No feature is proven only on a fake.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Health = Literal["ready", "loading", "unavailable"]


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One model of the catalog (data/catalog*.yaml).

    Prices are integers: micro-credits per million tokens (1 credit = 1 USD = 1,000,000
    micro-credits unless configured), so $0.15 / Mtok is 150_000.
    """

    id: str
    input_price_micros_per_mtok: int
    output_price_micros_per_mtok: int
    context_length: int
    ttft_ms: float = 200.0  # latency priors
    tpot_ms: float = 20.0
    served_name: str | None = None  # the name the engine serves it under (defaults to id)
    replicas: tuple[str, ...] = ()  # engine base URLs, e.g. "http://127.0.0.1:8101"
    launch: Mapping[str, Any] | None = None  # local launch spec (see engines.local)
    routing: Mapping[str, Any] = field(default_factory=dict)  # quality_proxy, quality_prior, ...
    owned_by: str = "inferbase"
    # request fields beyond OpenAI's passed to the engine; engine-internal answer fields kept
    # (serving.engines.fields)
    engine_params: frozenset[str] = frozenset()
    engine_fields: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class EngineStats:
    queue_depth: float = 0.0
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    kv_cache_usage: float | None = None


class EngineError(Exception):
    """An engine failed. Rendered as an OpenAI-shaped error (502 unless `status` says otherwise)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        type: str = "upstream_error",
        code: str | None = "backend_error",
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after


class Engines(Protocol):
    def models(self) -> list[CatalogModel]: ...

    def get(self, model_id: str) -> CatalogModel | None: ...

    def health(self, model_id: str) -> Health: ...

    def stats(self, model_id: str) -> EngineStats | None: ...

    def complete(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Non-streaming chat completion. `body` is the OpenAI request (model already set to the
        served name). Returns the upstream JSON (with `usage`). Raises EngineError."""
        ...

    def stream(self, model_id: str, body: dict[str, Any]) -> Iterator[dict[str, Any] | None]:
        """Streaming chat completion: yields each upstream chunk as a dict as soon as it arrives,
        and `None` as a keep-alive tick when the engine has been silent for a while. The caller
        always requests `stream_options.include_usage`. Closing the generator cancels the upstream
        request. Raises EngineError before the first chunk or mid-stream."""
        ...

    def close(self) -> None: ...
