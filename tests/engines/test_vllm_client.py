"""VLLMEngines against fake vLLM-shaped upstreams: selection, ejection and return, errors,
keep-alive ticks, cancellation, fork safety. The same features are proven against real vLLM in
test_vllm_integration.py."""

from __future__ import annotations

import multiprocessing
import os
import resource
import time

import pytest

from serving.engines.base import EngineError
from serving.engines.vllm import VLLMEngines
from tests.engines.conftest import free_port, model
from tests.engines.fake_upstream import FakeUpstream

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


def wait_for(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_complete_returns_upstream_json(upstreams):
    eng = VLLMEngines([model("m", upstreams[0].url)], monitor_interval_s=None)
    out = eng.complete("m", BODY)
    assert out["usage"]["completion_tokens"] == 5
    assert upstreams[0].bodies == [BODY]
    eng.close()


def test_least_outstanding_replica_is_picked(upstreams):
    a, b = upstreams
    for u in upstreams:
        u.chunks, u.chunk_delay_s = 20, 0.05
    eng = VLLMEngines([model("m", a.url, b.url)], monitor_interval_s=None)
    s1 = eng.stream("m", STREAM)
    next(s1)
    s2 = eng.stream("m", STREAM)
    next(s2)
    assert (a.requests, b.requests) == (1, 1)  # the busy replica was avoided
    assert sorted(r["outstanding"] for r in eng.replicas("m")) == [1, 1]
    s1.close()
    s2.close()
    assert [r["outstanding"] for r in eng.replicas("m")] == [0, 0]
    for _ in range(4):  # idle replicas: ties rotate
        eng.complete("m", BODY)
    assert (a.requests, b.requests) == (3, 3)
    eng.close()


def test_connections_reused_above_descriptor_1023(upstreams):
    """A busy worker (hundreds of streams, WebSockets, database connections) holds more than 1024
    descriptors: reusing a kept-alive engine connection must not depend on select()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"descriptor limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY)]
    try:
        while fillers[-1] < 1030:
            fillers.append(os.dup(fillers[0]))
        eng = VLLMEngines([model("m", upstreams[0].url)], monitor_interval_s=None)
        for _ in range(3):  # the 2nd and 3rd reuse the first connection
            assert eng.complete("m", BODY)["usage"]["completion_tokens"] == 5
        assert upstreams[0].requests == 3
        eng.close()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_refused_connection_fails_over_and_takes_replica_out(upstreams):
    dead = f"http://127.0.0.1:{free_port()}"
    live = upstreams[0]
    eng = VLLMEngines([model("m", dead, live.url)], monitor_interval_s=None)
    for _ in range(3):
        assert eng.complete("m", BODY)["usage"]["completion_tokens"] == 5
    assert live.requests == 3
    states = {r["url"]: r["state"] for r in eng.replicas("m")}
    assert states[dead] == "down"
    eng.close()


def test_taken_out_replica_comes_back_when_healthy():
    port = free_port()
    other = FakeUpstream("m")
    eng = VLLMEngines(
        [model("m", f"http://127.0.0.1:{port}", other.url)],
        monitor_interval_s=0.05,
        first_probe_wait_s=2,
    )
    assert eng.health("m") == "ready"
    assert wait_for(lambda: eng.replicas("m")[0]["state"] == "down")
    back = FakeUpstream("m", port=port)  # the engine comes (back) up on its port
    try:
        assert wait_for(lambda: eng.replicas("m")[0]["state"] == "ready")
        for _ in range(4):
            eng.complete("m", BODY)
        assert back.requests == 2 and other.requests == 2
    finally:
        eng.close()
        back.close()
        other.close()


def test_a_missed_probe_does_not_take_a_ready_replica_out():
    """A busy engine may answer /health late once; only several misses in a row take it out."""
    from serving.engines.monitor import FAILURES_TO_EJECT, HealthMonitor

    up = FakeUpstream("m")
    eng = VLLMEngines([model("m", up.url)], monitor_interval_s=None)
    pool = eng._p().pool
    mon = HealthMonitor(pool, {"m": "m"}, interval_s=60, process_alive=None, probe_timeout_s=0.2)
    try:
        mon.poll_once()
        assert eng.replicas("m")[0]["state"] == "ready"
        up.health_delay_s = 0.5
        for _ in range(FAILURES_TO_EJECT - 1):
            mon.poll_once()
            assert eng.replicas("m")[0]["state"] == "ready"
        mon.poll_once()
        assert eng.replicas("m")[0]["state"] == "down"
        up.health_delay_s = 0
        mon.poll_once()
        assert eng.replicas("m")[0]["state"] == "ready"
    finally:
        mon.stop()
        eng.close()
        up.close()


def test_health_states_and_retry_after_while_loading():
    up = FakeUpstream("m")
    up.health_status = 503
    dead = f"http://127.0.0.1:{free_port()}"
    eng = VLLMEngines(
        [model("m", up.url), model("d", dead), model("s", dead)],
        monitor_interval_s=0.05,
        process_alive=lambda url: url == dead and alive_flag["s"],
    )
    alive_flag = {"s": True}
    try:
        assert eng.health("m") == "loading"  # 503 during start-up
        assert eng.health("s") == "loading"  # port closed, process alive
        with pytest.raises(EngineError) as e:
            eng.complete("m", BODY)
        assert (e.value.status, e.value.code, e.value.retry_after) == (502, "model_loading", 10)
        up.health_status = 200
        assert wait_for(lambda: eng.health("m") == "ready")
        alive_flag["s"] = False  # the process died
        assert wait_for(lambda: eng.health("s") == "unavailable")
        with pytest.raises(EngineError) as e:
            eng.complete("s", BODY)
        assert (e.value.status, e.value.code, e.value.retry_after) == (
            502,
            "engine_unavailable",
            None,
        )
        with pytest.raises(EngineError) as e:
            eng.health("nope")
        assert e.value.status == 404
    finally:
        eng.close()
        up.close()


def test_stats_come_from_metrics():
    up = FakeUpstream("m")
    up.metrics_text = metrics_page(running=2, waiting=3, kv=0.25, ttft=(0.5, 10), itl=(0.2, 100))
    eng = VLLMEngines([model("m", up.url)], monitor_interval_s=0.05)
    try:
        assert eng.health("m") == "ready"
        st = eng.stats("m")
        assert st is not None and st.queue_depth == 5 and st.kv_cache_usage == 0.25
        assert st.ttft_ms == pytest.approx(50.0) and st.tpot_ms == pytest.approx(2.0)
        # next window: 10 more requests with 2.5 s of TTFT in total -> 250 ms mean
        up.metrics_text = metrics_page(running=0, waiting=0, kv=0, ttft=(3.0, 20), itl=(0.2, 100))
        assert wait_for(lambda: eng.stats("m").ttft_ms == pytest.approx(250.0))
        assert eng.stats("m").tpot_ms == pytest.approx(2.0)  # no new tokens: last figure kept
        assert eng.stats("m").queue_depth == 0
    finally:
        eng.close()
        up.close()


def metrics_page(running, waiting, kv, ttft, itl) -> str:
    lab = 'engine="0",model_name="m"'
    return "\n".join(
        [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{lab}}} {running}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{lab}}} {waiting}",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{{{lab}}} {kv}",
            "# TYPE vllm:time_to_first_token_seconds histogram",
            f'vllm:time_to_first_token_seconds_bucket{{{lab},le="+Inf"}} {ttft[1]}',
            f"vllm:time_to_first_token_seconds_sum{{{lab}}} {ttft[0]}",
            f"vllm:time_to_first_token_seconds_count{{{lab}}} {ttft[1]}",
            "# TYPE vllm:inter_token_latency_seconds histogram",
            f'vllm:inter_token_latency_seconds_bucket{{{lab},le="+Inf"}} {itl[1]}',
            f"vllm:inter_token_latency_seconds_sum{{{lab}}} {itl[0]}",
            f"vllm:inter_token_latency_seconds_count{{{lab}}} {itl[1]}",
            "",
        ]
    )


@pytest.mark.parametrize(
    "mode,status,code,param",
    [
        ("error_flat", 400, "invalid_value", "temperature"),
        ("error_nested", 400, "context_length_exceeded", "messages"),
        ("error_500", 502, "backend_error", None),
    ],
)
def test_upstream_errors_are_normalised(upstreams, mode, status, code, param):
    upstreams[0].mode = mode
    eng = VLLMEngines([model("m", upstreams[0].url)], monitor_interval_s=None)
    for call in (eng.complete, lambda m, b: next(eng.stream(m, {**b, "stream": True}))):
        with pytest.raises(EngineError) as e:
            call("m", BODY)
        assert (e.value.status, e.value.code, e.value.param) == (status, code, param)
        assert e.value.message
        eng._p().pool.set_state(eng._p().pool.of("m")[0], "unknown")  # undo the 5xx ejection
    eng.close()


def vllm_error(status, message, param=None, kind="BadRequestError"):
    """vLLM 0.32's error body (vllm/entrypoints/serve/exception_handling/error_response.py)."""
    return status, {"error": {"message": message, "type": kind, "param": param, "code": status}}


@pytest.mark.parametrize(
    "answer,status,code,param",
    [
        # renderers/params.py: a prompt longer than max_model_len, named by vLLM `input_tokens`
        (vllm_error(400, "This model's maximum context length is 1024 tokens. However, your "
                    "prompt contains 1500 input tokens, which exceeds this limit even without "
                    "any output tokens.", "input_tokens"), 400, "context_length_exceeded",
         "messages"),
        (vllm_error(400, "min_p must be in [0, 1], got 3.", "min_p"), 400, "invalid_value",
         "min_p"),
        (vllm_error(400, "'NoneType' object has no attribute 'x'"), 400, "invalid_request", None),
        (vllm_error(422, "bad tool_choice", "tool_choice", "UnprocessableEntityError"), 400,
         "invalid_value", "tool_choice"),
        # the engine does not serve the catalog's name for it: the gateway's fault, not the client's
        (vllm_error(404, "The model `m` does not exist.", None, "NotFoundError"), 502,
         "backend_error", None),
    ],
)  # fmt: skip
def test_vllm_errors_become_openai_errors(upstreams, answer, status, code, param):
    upstreams[0].mode, upstreams[0].error = "error", answer
    eng = VLLMEngines([model("m", upstreams[0].url)], monitor_interval_s=None)
    for call in (eng.complete, lambda m, b: next(eng.stream(m, {**b, "stream": True}))):
        with pytest.raises(EngineError) as e:
            call("m", BODY)
        assert (e.value.status, e.value.code, e.value.param) == (status, code, param)
        assert e.value.type == ("invalid_request_error" if status == 400 else "upstream_error")
        assert answer[1]["error"]["message"] in e.value.message
        eng._p().pool.set_state(eng._p().pool.of("m")[0], "unknown")  # undo an ejection
    eng.close()


def test_stream_yields_chunks_then_usage(upstreams):
    eng = VLLMEngines([model("m", upstreams[0].url)], monitor_interval_s=None)
    chunks = list(eng.stream("m", STREAM))
    assert len(chunks) == 6 and chunks[-1]["usage"]["completion_tokens"] == 5
    assert all(c["choices"][0]["delta"]["content"] == "x" for c in chunks[:5])
    assert eng.replicas("m")[0]["outstanding"] == 0
    eng.close()


def test_a_stream_names_the_replica_that_serves_it(upstreams):
    dead = f"http://127.0.0.1:{free_port()}"
    eng = VLLMEngines([model("m", dead, upstreams[0].url)], monitor_interval_s=None)
    s = eng.stream("m", STREAM)
    assert s.replica is None  # nothing sent yet
    next(s)
    assert s.replica == 1  # index 0 refused the connection: the request went to index 1
    s.close()
    assert [r["outstanding"] for r in eng.replicas("m")] == [0, 0]
    eng.close()


def test_keepalive_ticks_while_engine_is_silent(upstreams):
    upstreams[0].first_delay_s = 0.5
    eng = VLLMEngines([model("m", upstreams[0].url)], monitor_interval_s=None, keepalive_s=0.1)
    items = list(eng.stream("m", STREAM))
    ticks = [i for i, c in enumerate(items) if c is None]
    assert len(ticks) >= 3 and ticks == list(range(len(ticks)))  # all before the first chunk
    assert len(items) - len(ticks) == 6
    eng.close()


def test_closing_the_stream_cancels_upstream(upstreams):
    up = upstreams[0]
    up.chunks, up.chunk_delay_s = 200, 0.02
    eng = VLLMEngines([model("m", up.url)], monitor_interval_s=None)
    gen = eng.stream("m", STREAM)
    for _ in range(3):
        next(gen)
    gen.close()
    assert up.disconnected.wait(2.0)  # the upstream saw the client go
    assert up.chunks_sent < 200
    assert eng.replicas("m")[0]["outstanding"] == 0
    eng.close()


def _stream_until_it_fails(upstreams, mode: str) -> tuple[VLLMEngines, list, EngineError]:
    """Both replicas in `mode`; the chunks a stream yielded before its EngineError, and that."""
    a, b = upstreams
    a.mode = b.mode = mode
    eng = VLLMEngines([model("m", a.url, b.url)], monitor_interval_s=None)
    got = []
    with pytest.raises(EngineError) as e:
        for c in eng.stream("m", STREAM):
            got.append(c)
    return eng, got, e.value


def test_engine_dying_mid_stream_raises_after_chunks(upstreams):
    eng, got, err = _stream_until_it_fails(upstreams, "die_mid")
    assert len(got) == 2 and err.status == 502
    assert sorted(r["state"] for r in eng.replicas("m")) == ["down", "unknown"]
    eng.close()


@pytest.mark.parametrize("reason", ["error", "abort"])
def test_an_engine_ending_a_stream_with_an_error_finish_is_a_failure(upstreams, reason):
    eng, got, err = _stream_until_it_fails(upstreams, f"finish_{reason}")
    assert len(got) == 2 and err.status == 502
    assert f"finish_reason {reason!r}" in err.message
    eng.close()


def _child(eng: VLLMEngines, conn) -> None:
    conn.send((eng.health("m"), eng.complete("m", BODY)["usage"]["completion_tokens"]))


def test_works_after_fork(upstreams):
    eng = VLLMEngines([model("m", upstreams[0].url)], monitor_interval_s=0.05)
    assert eng.health("m") == "ready"  # the parent's monitor thread runs
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(eng, child))
    proc.start()
    assert parent.poll(10), "child did not answer"
    assert parent.recv() == ("ready", 5)
    proc.join(5)
    eng.close()


def test_a_stream_never_iterated_sends_nothing(upstreams):
    eng = VLLMEngines([model("m", upstreams[0].url)], monitor_interval_s=None)
    gen = eng.stream("m", STREAM)
    del gen
    assert upstreams[0].requests == 0 and eng.replicas("m")[0]["outstanding"] == 0
    eng.close()
