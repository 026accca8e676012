"""The real `openai` Python SDK against a live gateway (werkzeug server in a thread)."""

from __future__ import annotations

import openai
import pytest

from serving import accounts, db


@pytest.fixture
def sdk(live, api):
    def make(tenant=None, key=None):
        return openai.OpenAI(
            api_key=key or tenant.key,
            base_url=f"{live.base}/api/v1/inference",
            max_retries=0,
            timeout=10,
        )

    return make


MSG = [{"role": "user", "content": "Explain quantum computing in 3 sentences."}]


def test_sdk_non_streaming_and_streaming(sdk, api, engines):
    t = api.tenant()
    client = sdk(t)
    r = client.chat.completions.create(model="local/tiny-a", messages=MSG, temperature=0.7)
    assert r.model == "local/tiny-a" and r.usage.completion_tokens == 8
    assert r.choices[0].message.content == engines.reply
    stream = client.chat.completions.create(
        model="local/tiny-a", messages=MSG, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == engines.reply
    assert chunks[-1].usage.completion_tokens == 8 and chunks[-1].choices == []
    models = client.models.list()
    assert "Qwen/Qwen3-14B" in [m.id for m in models.data]


def test_sdk_auto_routing_stream_iterates_past_routing_event(sdk, api):
    t = api.tenant(pool=["local/tiny-a", "local/tiny-b"], optimize="cost")
    client = sdk(t)
    chunks = list(client.chat.completions.create(model="auto", messages=MSG, stream=True))
    assert chunks[0].object == "routing" and chunks[0].choices == []
    assert chunks[0].model_extra["task"] == "general_qa"
    assert {c.model for c in chunks[1:]} == {"local/tiny-a"}
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MSG)
    assert raw.headers["x-inferbase-model"] == "local/tiny-a"
    assert raw.parse().model_extra["routing"]["optimize"] == "cost"


def test_sdk_error_classes(sdk, api, app, engines):
    t = api.tenant(rpm_limit=3)
    with pytest.raises(openai.AuthenticationError) as e:
        sdk(key="inf_not_a_key").chat.completions.create(model="local/tiny-a", messages=MSG)
    assert e.value.status_code == 401
    client = sdk(t)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope/none", messages=MSG)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="local/tiny-a", messages=MSG, temperature=2.5)
    assert e.value.body["param"] == "temperature"
    for _ in range(3):  # only requests that get as far as the engine count
        client.chat.completions.create(model="local/tiny-a", messages=MSG)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="local/tiny-a", messages=MSG)
    assert e.value.status_code == 429 and int(e.value.response.headers["retry-after"]) >= 1

    poor = api.tenant(credits_micros=1)
    with pytest.raises(openai.APIStatusError) as e:
        sdk(poor).chat.completions.create(model="local/tiny-a", messages=MSG)
    assert e.value.status_code == 402 and e.value.body["code"] == "insufficient_credits"

    other = api.tenant()
    api.client.delete(f"/api/v1/inference/keys/{other.key_id}", headers=other.headers)
    with pytest.raises(openai.PermissionDeniedError) as e:
        sdk(other).chat.completions.create(model="local/tiny-a", messages=MSG)
    assert e.value.body["code"] == "key_revoked"

    gone = api.tenant()
    with app.app_context(), db.write() as conn:
        accounts.deactivate(conn, gone.email)
    with pytest.raises(openai.PermissionDeniedError):
        sdk(gone).chat.completions.create(model="local/tiny-a", messages=MSG)

    engines.fail_before = True
    with pytest.raises(openai.APIStatusError) as e:
        sdk(api.tenant()).chat.completions.create(model="local/tiny-a", messages=MSG)
    assert e.value.status_code == 502


def test_sdk_mid_stream_error_frame(sdk, api, engines):
    engines.fail_after = 2
    client = sdk(api.tenant())
    stream = client.chat.completions.create(model="local/tiny-a", messages=MSG, stream=True)
    with pytest.raises(openai.APIError) as e:
        list(stream)
    assert "mid-stream" in str(e.value)


def test_stream_is_not_buffered(live, api, engines):
    """Chunks reach the client while the engine is still generating."""
    import time

    import httpx

    engines.delay_s = 0.25  # 8 words: the engine needs ~2 s in all
    t = api.tenant()
    body = {"model": "local/tiny-a", "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    t0 = time.perf_counter()
    arrivals = []
    with httpx.Client(base_url=live.base, headers=t.headers, timeout=30) as c:
        with c.stream("POST", "/api/v1/inference/chat/completions", json=body) as rv:
            assert rv.status_code == 200
            for line in rv.iter_lines():
                if line.startswith("data: {"):
                    arrivals.append(time.perf_counter() - t0)
    total = time.perf_counter() - t0
    assert total >= 2.0
    assert arrivals[1] < total - 1.0  # the first word came well before the engine finished
    gaps = [b - a for a, b in zip(arrivals[1:], arrivals[2:], strict=False)]
    assert max(gaps) < 1.0 and sum(gaps) > 1.0  # spread out as generated, not in one burst


def test_client_disconnect_over_http_cancels_upstream(live, api, app, engines):
    import time

    import httpx
    import sqlalchemy as sa

    from serving.schema import usage_logs

    engines.delay_s = 0.3
    t = api.tenant()
    body = {"model": "local/tiny-a", "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    with httpx.Client(base_url=live.base, headers=t.headers, timeout=30) as c:
        with c.stream("POST", "/api/v1/inference/chat/completions", json=body) as rv:
            lines = rv.iter_lines()
            got = []
            for line in lines:
                if line.startswith("data: {"):
                    got.append(line)
                if len(got) == 2:
                    break
        # leaving the block closes the connection mid-stream
    deadline = time.time() + 10
    rows = []
    while time.time() < deadline and not rows:
        with app.app_context(), db.read() as conn:
            rows = (
                conn.execute(sa.select(usage_logs).where(usage_logs.c.account_id == t.account_id))
                .mappings()
                .all()
            )
        time.sleep(0.2)
    assert engines.closed, "the upstream stream was not closed"
    (row,) = rows
    assert row["status"] == "cancelled" and row["completion_tokens"] < 8
    assert api.balance(t)["reserved_micros"] == 0
