"""Load a model catalog (data/catalog*.yaml) into `CatalogModel`s.

The YAML is validated with pydantic at this boundary and turned into the frozen dataclasses of
`serving.engines.base`. Prices are written in USD (= credits) per million tokens and converted
exactly to integer micro-credits. A model with a local `launch` spec gets its replica URLs from the
spec: ``http://127.0.0.1:<port_base + port_offset + i>`` for each of its `replicas`; the port base
is the catalog's `port_base`, overridden by the environment variable ``INFERBASE_ENGINE_PORT_BASE``.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from serving.engines.base import CatalogModel
from serving.engines.fields import ENGINE_FIELDS

PORT_BASE_ENV = "INFERBASE_ENGINE_PORT_BASE"
DEFAULT_PORT_BASE = 8101
MICROS = Decimal(1_000_000)


class CatalogError(ValueError):
    """The catalog file is missing or invalid. The message names the file and the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceSpec(_Strict):
    input: Decimal = Field(ge=0, description="USD per million input tokens")
    output: Decimal = Field(ge=0, description="USD per million output tokens")


class LatencySpec(_Strict):
    ttft_ms: float = Field(default=200.0, gt=0)
    tpot_ms: float = Field(default=20.0, gt=0)


class LaunchSpec(_Strict):
    """How `inferbase engines up` starts this model locally (one vLLM server per replica)."""

    model: str = Field(description="model directory; relative paths live under <run dir>/models")
    build: str | None = Field(None, description="'tiny' builds the directory if it is missing")
    seed: int = 0
    replicas: int = Field(1, ge=1, le=8)
    port_offset: int = Field(0, ge=0)
    max_model_len: int = Field(1024, ge=16)
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("build")
    @classmethod
    def _known_builder(cls, v: str | None) -> str | None:
        if v not in (None, "tiny"):
            raise ValueError(f"unknown builder {v!r}; supported: 'tiny'")
        return v


class ModelSpec(_Strict):
    id: str = Field(min_length=1)
    served_name: str | None = None
    owned_by: str = "inferbase"
    context_length: int = Field(gt=0)
    price_usd_per_mtok: PriceSpec
    latency: LatencySpec = Field(default_factory=LatencySpec)
    replicas: list[str] = Field(default_factory=list)
    launch: LaunchSpec | None = None
    routing: dict[str, Any] = Field(default_factory=dict)
    engine_params: list[str] = Field(
        default_factory=list,
        description="request fields beyond OpenAI's that reach the engine (e.g. top_k, min_p)",
    )
    engine_fields: list[str] = Field(
        default_factory=list,
        description="engine-internal answer fields passed to the client (e.g. token_ids)",
    )

    @field_validator("engine_params")
    @classmethod
    def _not_gateway_fields(cls, v: list[str]) -> list[str]:
        taken = sorted(set(v) & {"model", "messages", "routing", "stream", "stream_options"})
        if taken:
            raise ValueError(f"{taken} are not engine parameters")
        return v

    @field_validator("engine_fields")
    @classmethod
    def _known_engine_fields(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - ENGINE_FIELDS)
        if unknown:
            raise ValueError(f"unknown engine fields {unknown}; known: {sorted(ENGINE_FIELDS)}")
        return v

    @model_validator(mode="after")
    def _has_an_engine(self) -> ModelSpec:
        if not self.replicas and self.launch is None:
            raise ValueError("a model needs `replicas` (engine URLs) or a local `launch` spec")
        if self.replicas and self.launch is not None:
            raise ValueError("give either `replicas` or `launch`, not both")
        for url in self.replicas:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"replica URL must start with http:// or https://: {url!r}")
        return self


class CatalogSpec(_Strict):
    port_base: int = Field(DEFAULT_PORT_BASE, gt=0, lt=65536)
    models: list[ModelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> CatalogSpec:
        seen: set[str] = set()
        for m in self.models:
            if m.id in seen:
                raise ValueError(f"duplicate model id {m.id!r}")
            seen.add(m.id)
        return self


def _micros(usd_per_mtok: Decimal, where: str) -> int:
    micros = usd_per_mtok * MICROS
    if micros != micros.to_integral_value():
        raise CatalogError(f"{where}: price {usd_per_mtok} USD/Mtok is finer than one micro-credit")
    return int(micros)


def port_base(spec_base: int) -> int:
    env = os.environ.get(PORT_BASE_ENV)
    return int(env) if env else spec_base


def to_catalog_model(m: ModelSpec, base: int) -> CatalogModel:
    replicas = tuple(u.rstrip("/") for u in m.replicas)
    launch: dict[str, Any] | None = None
    if m.launch is not None:
        ports = [base + m.launch.port_offset + i for i in range(m.launch.replicas)]
        replicas = tuple(f"http://127.0.0.1:{p}" for p in ports)
        launch = {**m.launch.model_dump(), "ports": ports}
    return CatalogModel(
        id=m.id,
        served_name=m.served_name or m.id,
        input_price_micros_per_mtok=_micros(m.price_usd_per_mtok.input, f"{m.id}.input"),
        output_price_micros_per_mtok=_micros(m.price_usd_per_mtok.output, f"{m.id}.output"),
        context_length=m.context_length,
        ttft_ms=m.latency.ttft_ms,
        tpot_ms=m.latency.tpot_ms,
        replicas=replicas,
        launch=launch,
        routing=dict(m.routing),
        owned_by=m.owned_by,
        engine_params=frozenset(m.engine_params),
        engine_fields=frozenset(m.engine_fields),
    )


def parse_catalog(data: Any, source: str = "<catalog>") -> list[CatalogModel]:
    try:
        spec = CatalogSpec.model_validate(data)
    except ValidationError as e:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in e.errors()
        ]
        raise CatalogError(f"invalid catalog {source}:\n" + "\n".join(lines)) from None
    base = port_base(spec.port_base)
    models = [to_catalog_model(m, base) for m in spec.models]
    ports = [p for m in models if m.launch for p in m.launch["ports"]]
    if len(ports) != len(set(ports)):
        raise CatalogError(f"invalid catalog {source}: two local replicas share a port {ports}")
    return models


def load_catalog(path: str | os.PathLike[str]) -> list[CatalogModel]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise CatalogError(f"catalog file not found: {p}") from None
    except yaml.YAMLError as e:
        raise CatalogError(f"catalog {p} is not valid YAML: {e}") from None
    return parse_catalog(data, str(p))
