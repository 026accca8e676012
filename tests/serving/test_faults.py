"""The ledger under faults, through real gunicorn workers (`inferbase serve`'s command line), on
SQLite and PostgreSQL: a worker SIGKILLed mid-stream, a worker that hangs and dies with
connections waiting, a client that disconnects mid-stream, an engine replica killed mid-stream,
and (on a throw-away PostgreSQL of the test's own) the database restarted under load.

After each: every request is billed for exactly the tokens it delivered or not at all, the balance
is deposits minus settled usage (`invariants.check`), no reservation is left open past its expiry
(a dead worker's are released when the master reaps it), and no balance goes negative. Each test
prints its counts (`pytest -s`)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
import sqlalchemy as sa

from serving import db, ledger
from serving.schema import reservations, usage_logs, utcnow
from serving.testing.fakes import MODELS, FakeEngines, FakeRouter
from tests.serving import invariants
from tests.serving.conftest import ApiActions, build_app, free_port
from tests.serving.pgserver import throwaway_postgres
from tests.serving.test_gunicorn import CHAT, SECRET, Gunicorn

REPO = Path(__file__).resolve().parents[2]
TINY_A = MODELS[0]
REPLY_TOKENS = 8  # the fake engine's reply: "hello from the fake engine with several words"
BODY = {"model": TINY_A.id, "messages": [{"role": "user", "content": "hi there"}]}
STREAM = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


@pytest.fixture
def setup_app(tmp_path: Path) -> Callable[[str], tuple[Any, ApiActions]]:
    """`make(url)`: the app (migrated) on the database the gunicorn server will use, and its
    `ApiActions` to create tenants and read the ledger."""

    def make(url: str) -> tuple[Any, ApiActions]:
        app = build_app(url, tmp_path, FakeEngines(), FakeRouter(), SECRET_KEY=SECRET)
        return app, ApiActions(app, app.test_client())

    return make


class Outcome:
    """What one client saw of one request."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.content = 0  # content chunks received (one token each)
        self.done = False  # `data: [DONE]` received
        self.error_frame: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self.transport: str | None = None  # the connection failed (reset, closed early)
        self.first = threading.Event()  # the first content chunk arrived

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.transport is None and self.error_frame is None


def stream(
    base: str,
    headers: dict[str, str],
    out: Outcome,
    body: dict[str, Any] = STREAM,
    stop_after: int | None = None,
    on_content: Callable[[int], None] | None = None,
) -> None:
    """One streamed chat request, frame by frame, into `out`; with `stop_after`, the client
    hangs up after that many content chunks."""
    try:
        with httpx.stream("POST", base + CHAT, json=body, headers=headers, timeout=30) as rv:
            out.status = rv.status_code
            if rv.status_code != 200:
                out.error_frame = orjson.loads(rv.read())["error"]
                return
            for line in rv.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    out.done = True
                    continue
                frame = orjson.loads(line[6:])
                if "error" in frame:
                    out.error_frame = frame["error"]
                elif frame.get("usage"):
                    out.usage = frame["usage"]
                elif any((c.get("delta") or {}).get("content") for c in frame.get("choices") or []):
                    out.content += 1
                    out.first.set()
                    if on_content is not None:
                        on_content(out.content)
                    if stop_after is not None and out.content >= stop_after:
                        return  # leaving the block closes the connection mid-stream
    except httpx.TransportError as e:
        out.transport = type(e).__name__
    finally:
        out.first.set()


def workers(server: Gunicorn) -> list[psutil.Process]:
    return psutil.Process(server.proc.pid).children()


def wait_for(what: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


def reservation_counts(app: Any) -> Counter[str]:
    with app.app_context(), db.read() as conn:
        rows = conn.execute(
            sa.select(reservations.c.status, sa.func.count()).group_by(reservations.c.status)
        ).all()
    return Counter({status: n for status, n in rows})


def usage_rows(app: Any, account_id: int) -> list[Any]:
    with app.app_context(), db.read() as conn:
        return list(
            conn.execute(sa.select(usage_logs).where(usage_logs.c.account_id == account_id)).all()
        )


def check_ledger(app: Any, account_id: int) -> dict[str, int]:
    """The invariants, no reservation open past its expiry, every usage row priced at its
    tokens."""
    with app.app_context(), db.read() as conn:
        state = invariants.check(conn, account_id)
        overdue = conn.execute(
            sa.select(sa.func.count()).where(
                reservations.c.status == "open", reservations.c.expires_at < utcnow()
            )
        ).scalar_one()
    assert overdue == 0
    assert state["balance"] >= 0
    for row in usage_rows(app, account_id):
        m = next(m for m in MODELS if m.id == row.served_model) if row.served_model else TINY_A
        price = ledger.cost_micros(
            row.prompt_tokens,
            row.completion_tokens,
            m.input_price_micros_per_mtok,
            m.output_price_micros_per_mtok,
        )
        assert row.cost_micros == price, row
    return state


def report(name: str, **counts: Any) -> None:
    print(f"\n[{name}] " + " ".join(f"{k}={v}" for k, v in counts.items()))


def test_worker_sigkilled_mid_stream(db_url, tmp_path, setup_app):
    """The streams of a SIGKILLed worker are cut and not billed; its reservations are released as
    soon as the master reaps it (not at their one-hour expiry); the other worker's streams finish
    and are billed in full; the master's new worker serves."""
    app, api = setup_app(db_url)
    deposit = 10_000_000
    t = api.tenant(credits_micros=deposit, rpm_limit=100_000)
    server = Gunicorn(db_url, tmp_path, workers=2, INFERBASE_FAKE_DELAY_S="0.25")
    try:
        outs = [Outcome() for _ in range(8)]
        threads = [threading.Thread(target=stream, args=(server.base, t.headers, o)) for o in outs]
        for th in threads:
            th.start()
        for o in outs:
            assert o.first.wait(15)
        assert reservation_counts(app)["open"] == len(outs)
        # the worker holding the most of these streams
        busiest = max(workers(server), key=lambda w: _established(w, server.port))
        held = _established(busiest, server.port)
        busiest.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        released = wait_for(lambda: reservation_counts(app)["abandoned"] >= held, 15)
        release_s = time.monotonic() - killed
        for th in threads:
            th.join(30)
        # the master started a new worker, which serves
        wait_for(lambda: len(workers(server)) == 2, 15)
        again = Outcome()
        stream(server.base, t.headers, again)
        assert again.ok and again.done
    finally:
        server.stop()
    cut = [o for o in outs if not o.done]
    finished = [o for o in outs if o.done]
    counts = reservation_counts(app)
    assert released and held >= 1 and len(cut) == held
    assert counts["abandoned"] == len(cut) and counts["open"] == 0
    assert release_s < 10  # the expiry (RESERVATION_TTL_S) is an hour
    for o in cut:
        assert o.content < REPLY_TOKENS and (o.transport or o.status == 200)
    for o in finished:
        assert o.ok and o.content == REPLY_TOKENS and o.usage is not None
    rows = usage_rows(app, t.account_id)
    # billed: the streams that finished (and the one after), each for its delivered tokens
    assert len(rows) == len(finished) + 1
    assert all(r.status == "success" and r.completion_tokens == REPLY_TOKENS for r in rows)
    state = check_ledger(app, t.account_id)
    assert state["reserved"] == 0
    assert deposit - state["balance"] == sum(r.cost_micros for r in rows)
    report(
        "worker SIGKILL mid-stream",
        answers=len(finished) + 1,
        billed=len(rows),
        errors=len(cut),
        reservations_released=counts["abandoned"],
        release_s=f"{release_s:.2f}",
    )
    app.extensions["db"].dispose()


def _established(proc: psutil.Process, port: int) -> int:
    try:
        conns = proc.net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return 0
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def test_dead_worker_loses_no_queued_connection(db_url, tmp_path, setup_app):
    """The workers share one listening socket: a worker that hangs (SIGSTOP) takes no new
    connection, the others serve them all, and when it is then killed no waiting connection is
    reset with it (with a socket per worker, SO_REUSEPORT, the kernel queues about half of them
    on the hung worker's socket, and they are reset when it dies)."""
    app, api = setup_app(db_url)
    t = api.tenant(rpm_limit=100_000)
    server = Gunicorn(db_url, tmp_path, workers=2)
    try:
        victim = workers(server)[0]
        victim.send_signal(signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(16) as pool:

                def one(_: int) -> int | str:
                    try:
                        rv = httpx.post(
                            server.base + CHAT,
                            json=BODY,
                            headers={**t.headers, "Connection": "close"},
                            timeout=20,
                        )
                    except httpx.TransportError as e:
                        return type(e).__name__
                    return rv.status_code

                futures = [pool.submit(one, i) for i in range(16)]
                time.sleep(1.0)  # (with SO_REUSEPORT, some would now wait on the hung worker)
                with contextlib.suppress(psutil.NoSuchProcess):  # (or the master's timeout
                    victim.send_signal(signal.SIGKILL)  # already killed the silent worker)
                answers = Counter(f.result(30) for f in futures)
        finally:
            with contextlib.suppress(psutil.NoSuchProcess):
                victim.send_signal(signal.SIGKILL)
    finally:
        server.stop()
    assert answers == Counter({200: 16}), answers
    state = check_ledger(app, t.account_id)
    assert len(usage_rows(app, t.account_id)) == 16 and state["reserved"] == 0
    report("hung worker killed", answers=answers[200], errors=16 - answers[200])
    app.extensions["db"].dispose()


def test_client_disconnects_mid_stream(db_url, tmp_path, setup_app):
    """A client that hangs up is billed for what the gateway sent it, not for the whole reply."""
    app, api = setup_app(db_url)
    deposit = 10_000_000
    t = api.tenant(credits_micros=deposit, rpm_limit=100_000)
    # a 40-token reply: the gateway meets the hang-up on its next writes, ~0.4 s after it, so a
    # reply that outlasts that by seconds is never billed whole (with the 8-token reply a client
    # that once took over a second to close its socket, in CI, was billed all 8)
    repeat = 5
    server = Gunicorn(db_url, tmp_path, workers=2, INFERBASE_FAKE_DELAY_S="0.2",
                      INFERBASE_FAKE_REPLY_REPEAT=str(repeat))  # fmt: skip
    try:
        outs = [Outcome() for _ in range(4)]
        for o in outs:
            stream(server.base, t.headers, o, stop_after=3)
        rows = wait_for(lambda: len(usage_rows(app, t.account_id)) == 4 and
                        usage_rows(app, t.account_id), 15)  # fmt: skip
    finally:
        server.stop()
    assert rows and all(o.content == 3 and not o.done for o in outs)
    for r in rows:
        assert r.status == "cancelled"
        # what was written before the hang-up, not the whole reply
        assert 3 <= r.completion_tokens < repeat * REPLY_TOKENS
    state = check_ledger(app, t.account_id)
    assert state["reserved"] == 0 and deposit - state["balance"] == sum(r.cost_micros for r in rows)
    report(
        "client disconnect",
        answers=len(outs),
        billed=len(rows),
        tokens_received=sum(o.content for o in outs),
        tokens_billed=sum(r.completion_tokens for r in rows),
    )
    app.extensions["db"].dispose()


def fake_replica(port: int, chunks: int, delay_ms: float, log: Path) -> subprocess.Popen[bytes]:
    """An OpenAI-compatible engine replica that can be killed (benchmarks/fake_upstream.py:
    vLLM's wire shapes, streams ending with a usage chunk)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "fake_upstream.py"), "--port", str(port),
             "--chunks", str(chunks), "--chunk-delay-ms", str(delay_ms)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    ok = wait_for(lambda: _healthy(f"http://127.0.0.1:{port}"), 15)
    assert ok, log.read_text()
    return proc


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_engine_replica_killed_mid_stream(db_url, tmp_path, setup_app):
    """The replica serving a stream dies: the client gets an error frame and `[DONE]`, is billed
    for exactly the tokens it received, and the model's other replica serves what follows."""
    ports = [free_port(), free_port()]
    replicas = [fake_replica(p, 40, 50, tmp_path / f"replica-{i}.log") for i, p in enumerate(ports)]
    catalog = tmp_path / "catalog.yaml"
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    catalog.write_text(
        "models:\n  - id: bench/upstream\n    price_usd_per_mtok: {input: 0.10, output: 0.40}\n"
        f"    context_length: 8192\n    replicas: [{', '.join(urls)}]\n"
    )
    app, api = setup_app(db_url)
    deposit = 10_000_000
    t = api.tenant(credits_micros=deposit, rpm_limit=100_000)
    server = Gunicorn(
        db_url,
        tmp_path,
        workers=2,
        INFERBASE_ENGINES_FACTORY="serving.engines:build_engines",
        INFERBASE_CATALOG=str(catalog),
    )
    body = {"model": "bench/upstream", "messages": BODY["messages"], "max_tokens": 40,
            "stream": True}  # fmt: skip
    out = Outcome()
    try:
        served_by: list[int] = []

        def kill_at_five(n: int) -> None:
            if n == 5:
                replicas[served_by[0]].kill()

        _stream_naming_replica(server.base, t.headers, body, out, served_by, kill_at_five)
        after = [
            httpx.post(server.base + CHAT, json={**body, "stream": False, "max_tokens": 4},
                       headers=t.headers, timeout=20)
            for _ in range(3)
        ]  # fmt: skip
    finally:
        server.stop()
        for r in replicas:
            r.kill()
            r.wait()
    assert out.status == 200 and out.done and out.error_frame is not None
    assert out.error_frame["type"] and 5 <= out.content < 40
    assert [rv.status_code for rv in after] == [200, 200, 200]
    rows = sorted(usage_rows(app, t.account_id), key=lambda r: r.seq)
    first = rows[0]
    assert first.status == "error" and first.error_type
    assert first.completion_tokens == out.content  # exactly what the client received
    assert [r.status for r in rows[1:]] == ["success"] * 3
    with app.app_context(), db.read() as conn:
        state = invariants.check(conn, t.account_id)
    assert state["reserved"] == 0 and deposit - state["balance"] == sum(r.cost_micros for r in rows)
    report(
        "engine replica killed mid-stream",
        answers=1 + len(after),
        billed=len(rows),
        errors=1,
        tokens_received=out.content,
        tokens_billed=first.completion_tokens,
    )
    app.extensions["db"].dispose()


def _stream_naming_replica(
    base: str,
    headers: dict[str, str],
    body: dict[str, Any],
    out: Outcome,
    served_by: list[int],
    on_content: Callable[[int], None],
) -> None:
    """`stream`, noting the replica the gateway names (X-Inferbase-Replica) before any chunk."""
    with httpx.stream("POST", base + CHAT, json=body, headers=headers, timeout=30) as rv:
        out.status = rv.status_code
        served_by.append(int(rv.headers["X-Inferbase-Replica"]))
        for line in rv.iter_lines():
            if line == "data: [DONE]":
                out.done = True
            elif line.startswith("data: {"):
                frame = orjson.loads(line[6:])
                if "error" in frame:
                    out.error_frame = frame["error"]
                elif any((c.get("delta") or {}).get("content") for c in frame.get("choices") or []):
                    out.content += 1
                    on_content(out.content)


@pytest.mark.postgres
def test_postgres_restarted_under_load(tmp_path, setup_app):
    """PostgreSQL restarts under mixed JSON/stream load: while it is down requests get a 503
    `database_unavailable` (never a 500), settlements wait for it, everything answered is billed
    for its tokens, holds of requests that could not settle are released at their expiry, and the
    gateway serves again once the database is back."""
    with throwaway_postgres(tmp_path) as pg:
        app, api = setup_app(pg.url)
        deposit = 100_000_000
        t = api.tenant(credits_micros=deposit, rpm_limit=1_000_000)
        server = Gunicorn(
            pg.url,
            tmp_path,
            workers=2,
            INFERBASE_RESERVATION_TTL_S="4",
            INFERBASE_SWEEP_INTERVAL_S="1",
            INFERBASE_FAKE_DELAY_S="0.01",
        )
        outcomes: list[tuple[float, Outcome]] = []
        lock = threading.Lock()
        stop = threading.Event()
        restarted: list[float] = []

        def client(i: int) -> None:
            n = 0
            with httpx.Client(base_url=server.base, headers=t.headers, timeout=30) as c:
                while not stop.is_set():
                    o = Outcome()
                    n += 1
                    if (i + n) % 2:
                        stream(server.base, t.headers, o)
                    else:
                        try:
                            rv = c.post(CHAT, json=BODY)
                            o.status = rv.status_code
                            if rv.status_code == 200:
                                o.content = rv.json()["usage"]["completion_tokens"]
                                o.done = True
                            else:
                                o.error_frame = rv.json()["error"]
                        except httpx.TransportError as e:
                            o.transport = type(e).__name__
                    with lock:
                        outcomes.append((time.monotonic(), o))

        try:
            threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
            for th in threads:
                th.start()
            time.sleep(2.5)
            pg.pg_ctl("restart", "-m", "fast")
            restarted.append(time.monotonic())
            time.sleep(4.0)
            stop.set()
            for th in threads:
                th.join(30)
            time.sleep(5)  # past every hold's expiry (RESERVATION_TTL_S=4)
            for _ in range(4):  # a request in each worker runs the expiry sweep
                httpx.post(server.base + CHAT, json=BODY, headers=t.headers, timeout=20)
            last = [o for at, o in outcomes if at > restarted[0] + 2.5]
        finally:
            stop.set()
            server.stop()
        app.extensions["db"].dispose()  # (the test's own connections died with the restart)
        ok = [o for _, o in outcomes if o.ok and o.done]
        failed = [o for _, o in outcomes if not (o.ok and o.done)]
        kinds = Counter(
            o.transport or (o.error_frame or {}).get("code") or str(o.status) for o in failed
        )
        # while the database is down: a 503 with a code (or, for a stream, an error frame); never
        # a 500 or a dropped connection
        assert set(kinds) <= {"database_unavailable"}, kinds
        assert last and all(o.ok for o in last)  # serving again once it is back
        rows = usage_rows(app, t.account_id)
        billed = [r for r in rows if r.cost_micros > 0]
        # every answer billed once for its tokens, nothing billed that was not answered
        assert len(billed) == len(ok) + 4
        assert all(r.completion_tokens == REPLY_TOKENS for r in billed)
        counts = reservation_counts(app)
        state = check_ledger(app, t.account_id)
        assert state["reserved"] == 0 and counts["open"] == 0
        report(
            "PostgreSQL restart under load",
            answers=len(ok),
            billed=len(billed),
            errors=len(failed),
            error_kinds=dict(kinds),
            reservations_released=counts["expired"],
        )
        app.extensions["db"].dispose()
