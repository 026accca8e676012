"""The loop the product exists for: `python -m evals train` + `promote` on the shared benchmark data
produce a champion in the MLflow registry, the running gateway picks it up without a restart, and
`model: "auto"` is routed by it — through the official OpenAI SDK, streaming and not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import API, REPO, Stack, workers_loaded

pytestmark = pytest.mark.vllm

DATA = Path(os.environ.get("INFERBASE_DATA_DIR") or REPO.parent / "shared" / "data")
POOL = {"local/tiny-a", "local/tiny-b"}


def router_info(stack: Stack) -> dict:
    return httpx.get(stack.base_url + API + "/models").json()["router"]


def test_before_promotion_auto_uses_the_prior_router_and_says_so(stack: Stack):
    assert router_info(stack)["trained"] is False
    client = openai.OpenAI(api_key=stack.key, base_url=stack.base_url + API, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Hello!"}], max_tokens=4
    )
    rv = raw.parse()
    assert rv.model in POOL
    assert rv.routing["router_version"] == "prior"
    assert raw.headers["X-Inferbase-Model"] == rv.model


@pytest.mark.skipif(not DATA.is_dir(), reason="no benchmark data directory")
# a cold fine-tune of the task encoder alone takes ~7 min on an AVX2-only two-core machine
# (session 12: the test's default 600 s ran out in `evals train`)
@pytest.mark.timeout(2400)
def test_train_promote_then_auto_is_routed_by_the_champion(stack: Stack):
    env = {**stack.env, "INFERBASE_DATA_DIR": str(DATA)}
    out = subprocess.run(
        [sys.executable, "-m", "evals", "train", "--max-train", "300", "--max-eval", "200",
         "--promote"],
        env=env, cwd=stack.home, capture_output=True, text=True, timeout=2100,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # the gateway polls the alias (INFERBASE_ROUTER_POLL_S=1): no restart. Every gunicorn worker
    # swaps on its own, and answers from one shared socket need not reach both, so wait until
    # the gateway says it is trained and its log says both workers loaded that version.
    deadline = time.monotonic() + 120
    version = None
    port = stack.base_url.rsplit(":", 1)[1]
    while version is None or workers_loaded(stack.home, port, version) < 2:
        assert time.monotonic() < deadline, "the gateway never picked up the champion"
        info = router_info(stack)
        version = info["version"] if info["trained"] else version
        time.sleep(0.2)

    client = openai.OpenAI(api_key=stack.key, base_url=stack.base_url + API, max_retries=0)
    code = [{"role": "user", "content": "Write a Python function to sort a list"}]
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=code, max_tokens=4
    )
    rv = raw.parse()
    assert rv.model in POOL
    assert rv.routing["model"] == rv.model
    assert rv.routing["task"] == "code_generation"
    assert set(rv.routing["candidates"]) == POOL
    assert rv.routing["router_version"].startswith(f"inferroute/{version}:")

    # per-request overrides, exactly as the API reference documents them
    rv = client.chat.completions.create(
        model="auto",
        messages=code,
        max_tokens=4,
        extra_body={"routing": {"model_pool": ["local/tiny-b"], "optimize": "cost",
                                "task": "analysis"}},
    )  # fmt: skip
    assert rv.model == "local/tiny-b"
    assert rv.routing["task"] == "analysis" and rv.routing["optimize"] == "cost"

    # streaming: the first event is the routing decision, and the SDK's ordinary loop survives it
    chunks = list(
        client.chat.completions.create(
            model="auto", messages=code, max_tokens=6, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    first = chunks[0].model_dump()
    assert first["object"] == "routing" and first["choices"] == []
    assert first["model"] in POOL and first["task"] == "code_generation"
    assert {"complexity", "confidence", "routing_time_ms"} <= set(first)
    assert chunks[-1].usage.completion_tokens > 0

    row = stack.get(API + "/usage?limit=1").json()["data"][0]
    assert row["requested_model"] == "auto" and row["served_model"] == first["model"]
    assert row["routing_task"] == "code_generation"
    assert row["router_version"].startswith(f"inferroute/{version}:")
