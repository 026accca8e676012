"""The gateway in front of real vLLM engines, driven by the official OpenAI SDKs.

Usage and billing must be exact to the engine's own token counts; a replica killed mid-stream ends
the stream with an error frame and `[DONE]` and bills only what was delivered; the other replica
keeps serving. Tests run in file order on one stack (tests/e2e/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from serving.engines import local
from tests.e2e.conftest import API, REPO, Stack

pytestmark = pytest.mark.vllm

PRICES = {"local/tiny-a": (100_000, 300_000), "local/tiny-b": (1_000_000, 3_000_000)}
MSGS = [{"role": "user", "content": "What is machine learning?"}]


def cost(model: str, prompt: int, completion: int) -> int:
    pin, pout = PRICES[model]
    return -(-(prompt * pin + completion * pout) // 1_000_000)


def client(stack: Stack, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key=key or stack.key, base_url=stack.base_url + API, max_retries=0)


def prompt_tokens(stack: Stack, model_dir: str, messages) -> int:
    tok = AutoTokenizer.from_pretrained(
        str(local.run_dir(stack.home) / "models" / model_dir), local_files_only=True
    )
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def balance(stack: Stack) -> int:
    return stack.get(API + "/credits").json()["balance_micros"]


def latest_usage(stack: Stack) -> dict:
    return stack.get(API + "/usage?limit=1").json()["data"][0]


def test_python_sdk_non_streaming_usage_and_billing_are_exact(stack: Stack):
    before = balance(stack)
    rv = client(stack).chat.completions.create(
        model="local/tiny-a", messages=MSGS, max_tokens=12, extra_body={"ignore_eos": True}
    )
    assert rv.object == "chat.completion"
    assert rv.model == "local/tiny-a"
    assert rv.choices[0].message.role == "assistant"
    assert rv.usage.completion_tokens == 12
    assert rv.usage.prompt_tokens == prompt_tokens(stack, "tiny-a", MSGS)
    expected = cost("local/tiny-a", rv.usage.prompt_tokens, 12)
    assert before - balance(stack) == expected
    row = latest_usage(stack)
    assert (row["served_model"], row["status"], row["stream"]) == ("local/tiny-a", "success", False)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (rv.usage.prompt_tokens, 12)
    assert row["cost_micros"] == expected
    assert stack.get(API + "/credits").json()["reserved_micros"] == 0


def test_python_sdk_streaming_passes_chunks_and_bills_exactly(stack: Stack):
    before = balance(stack)
    stream = client(stack).chat.completions.create(
        model="local/tiny-b",
        messages=MSGS,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) >= 10  # token by token, not one buffered blob
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens == 20
    assert usage.prompt_tokens == prompt_tokens(stack, "tiny-b", MSGS)
    assert before - balance(stack) == cost("local/tiny-b", usage.prompt_tokens, 20)
    row = latest_usage(stack)
    assert row["stream"] is True and row["completion_tokens"] == 20
    assert row["ttft_ms"] is not None and row["ttft_ms"] <= row["latency_ms"]


def test_usage_chunk_is_stripped_unless_asked(stack: Stack):
    chunks = list(
        client(stack).chat.completions.create(
            model="local/tiny-a", messages=MSGS, max_tokens=5, stream=True
        )
    )
    assert chunks and all(c.usage is None for c in chunks)
    assert latest_usage(stack)["completion_tokens"] > 0  # billed all the same


def test_sdk_errors_from_the_real_stack(stack: Stack):
    with pytest.raises(openai.NotFoundError):
        client(stack).chat.completions.create(model="no/such-model", messages=MSGS)
    with pytest.raises(openai.AuthenticationError):
        client(stack, key="inf_" + "x" * 43).chat.completions.create(
            model="local/tiny-a", messages=MSGS
        )
    with pytest.raises(openai.BadRequestError) as e:
        client(stack).chat.completions.create(model="local/tiny-a", messages=MSGS, temperature=3)
    assert e.value.body["param"] == "temperature"
    # longer than the engine's context: vLLM's own 400, normalised, and nothing billed
    before = balance(stack)
    with pytest.raises(openai.BadRequestError):
        client(stack).chat.completions.create(
            model="local/tiny-a", messages=[{"role": "user", "content": "word " * 3000}]
        )
    assert balance(stack) == before


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_sdk_against_the_gateway(stack: Stack):
    node_dir = REPO / "tests" / "e2e" / "node"
    if not (node_dir / "node_modules" / "openai").exists():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"],
            cwd=node_dir,
            check=True,
            timeout=300,
        )
    out = subprocess.run(
        ["node", "sdk_check.mjs"],
        cwd=node_dir,
        env={
            **os.environ,
            "INFERBASE_API_KEY": stack.key,
            "INFERBASE_BASE_URL": stack.base_url + API,
            "INFERBASE_MODEL": "local/tiny-a",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["nonstream"]["model"] == "local/tiny-a"
    assert seen["nonstream"]["usage"]["total_tokens"] == (
        seen["nonstream"]["usage"]["prompt_tokens"]
        + seen["nonstream"]["usage"]["completion_tokens"]
    )
    assert seen["stream"]["chunks"] >= 2 and seen["stream"]["usage"]["completion_tokens"] > 0
    assert seen["notfound"] == {"status": 404, "name": "NotFoundError"}


def test_replica_killed_mid_stream_bills_delivered_tokens_and_other_replica_serves(stack: Stack):
    before = balance(stack)
    # 16 answers (the most the gateway allows) of 990 tokens with 20 logprobs each: ~16,000 frames
    # of ~1 KB, ~16 MB of SSE, seconds of work for the replica's server. With one answer of plain
    # text (~0.1 MB) a fast replica had once, in CI, handed the kernel its whole answer before this
    # client got to the kill, and the stream ended normally.
    n = 16
    body = {
        "model": "local/tiny-a",
        "messages": MSGS,
        "max_tokens": 990,
        "ignore_eos": True,
        "stream": True,
        "n": n,
        "logprobs": True,
        "top_logprobs": 20,
    }
    frames: list[str] = []
    rd = local.run_dir(stack.home)
    models = _models(stack)
    pids = {
        info["url"]: int(info["pid"])
        for info in local.status(rd, models)
        if info.get("model") == "local/tiny-a" and info.get("pid")
    }
    assert len(pids) == 2
    replicas = next(m.replicas for m in models if m.id == "local/tiny-a")
    with httpx.stream(
        "POST",
        stack.base_url + API + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {stack.key}"},
        timeout=60,
    ) as rv:
        assert rv.status_code == 200, rv.read()
        # the gateway names the replica serving this stream (its index in the catalog)
        url = replicas[int(rv.headers["X-Inferbase-Replica"])]
        lines = rv.iter_lines()
        for line in lines:
            if line.startswith("data: {") and '"content"' in line:
                frames.append(line)
            if sum(1 for f in frames if has_text(f)) >= 5:
                break
        # kill that engine while it is still generating
        os.killpg(pids[url], signal.SIGKILL)  # the whole engine: server, core and worker
        frames.extend(line for line in lines if line.startswith("data: "))
    assert frames[-1] == "data: [DONE]"
    events = [json.loads(f[6:]) for f in frames if f.startswith("data: {")]
    errors = [e for e in events if "error" in e]
    assert errors and errors[-1]["error"]["type"]
    # vLLM may end the killed request with finish_reason "error" or "abort" before it dies: the
    # gateway turns that into the error event, never a chunk that looks like a normal end
    finishes = {c.get("finish_reason") for e in events for c in e.get("choices") or ()}
    assert not finishes & {"error", "abort"}
    delivered = sum(1 for f in frames if has_text(f))
    row = latest_usage(stack)
    assert row["status"] == "error" and row["error_type"]
    # each choice's tokens count (vLLM's continuous usage is per choice): at least what arrived
    assert 5 <= row["completion_tokens"] < n * 990
    assert row["completion_tokens"] >= delivered - 1
    assert before - balance(stack) == row["cost_micros"]
    assert stack.get(API + "/credits").json()["reserved_micros"] == 0
    # the dead replica is taken out: the next requests are served by the other one
    for _ in range(3):
        rv = client(stack).chat.completions.create(
            model="local/tiny-a", messages=MSGS, max_tokens=4
        )
        assert rv.usage.completion_tokens > 0


def has_text(frame: str) -> bool:
    """A chunk that delivered generated text (not the role chunk, an error or usage)."""
    if not frame.startswith("data: {"):
        return False
    choices = json.loads(frame[6:]).get("choices") or []
    return any((c.get("delta") or {}).get("content") for c in choices)


def _models(stack: Stack):
    from serving.engines.catalog import load_catalog

    return load_catalog(stack.catalog)
