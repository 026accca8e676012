from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from serving.engines.base import CatalogModel
from tests.engines.fake_upstream import FakeUpstream


def model(mid: str, *urls: str) -> CatalogModel:
    return CatalogModel(
        id=mid,
        served_name=mid,
        input_price_micros_per_mtok=100_000,
        output_price_micros_per_mtok=300_000,
        context_length=1024,
        replicas=tuple(urls),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def upstreams() -> Iterator[list[FakeUpstream]]:
    ups = [FakeUpstream("m"), FakeUpstream("m")]
    yield ups
    for u in ups:
        u.close()
