"""Several gunicorn workers (as `inferbase serve` runs them) with the fake engines: cross-worker
key revocation and the concurrent ledger test, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from serving import db, ledger
from serving.cli import gunicorn_argv
from serving.schema import usage_logs
from serving.testing.fakes import MODELS, FakeEngines, FakeRouter
from tests.serving import invariants
from tests.serving.conftest import ApiActions, build_app, free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "gunicorn-test-secret-" + "y" * 32
CHAT = "/api/v1/inference/chat/completions"


class Gunicorn:
    def __init__(self, db_url: str, home: Path, workers: int = 3, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "INFERBASE_DATABASE_URL": db_url,
            "INFERBASE_HOME": str(home),
            "INFERBASE_SECRET_KEY": SECRET,
            "INFERBASE_ENGINES_FACTORY": "serving.testing.fakes:make_engines",
            **env,
        }
        full_env.pop("INFERBASE_REDIS_URL", None)
        self.log = open(home / "gunicorn.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            gunicorn_argv(f"127.0.0.1:{self.port}", workers, 16),
            cwd=REPO,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError((home / "gunicorn.log").read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def setup_app(tmp_path):
    def make(url):
        app = build_app(url, tmp_path, FakeEngines(), FakeRouter(), SECRET_KEY=SECRET)
        return app, ApiActions(app, app.test_client())

    return make


def test_revocation_is_seen_at_once_by_every_worker(sqlite_url, tmp_path, setup_app):
    app, api = setup_app(sqlite_url)
    t = api.tenant()
    server = Gunicorn(sqlite_url, tmp_path, INFERBASE_KEY_CACHE_TTL_S="600")
    try:
        body = {"model": "local/tiny-a", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=server.base, headers=t.headers) as c:
            pids = Counter()
            for _ in range(200):  # new connections until more than one worker has served one
                rv = c.post(CHAT, json=body, headers={"Connection": "close"})
                assert rv.status_code == 200
                pids[rv.json()["system_fingerprint"]] += 1
                if len(pids) >= 2 and sum(pids.values()) >= 24:
                    break
            assert len(pids) >= 2, pids  # several workers hold the key in their cache
            assert c.delete(f"/api/v1/inference/keys/{t.key_id}").status_code == 200
            for _ in range(12):
                rv = c.post(CHAT, json=body, headers={"Connection": "close"})
                assert rv.status_code == 403 and rv.json()["error"]["code"] == "key_revoked"
                rv = c.get("/api/v1/inference/credits", headers={"Connection": "close"})
                assert rv.status_code == 403
    finally:
        server.stop()
    app.extensions["db"].dispose()


def test_concurrent_ledger_through_workers(db_url, tmp_path, setup_app):
    app, api = setup_app(db_url)
    deposit = 5_000
    t = api.tenant(credits_micros=deposit, rpm_limit=100_000)
    server = Gunicorn(db_url, tmp_path)
    low = []
    stop = threading.Event()

    def watch():
        eng = sa.create_engine(db_url)
        with eng.connect() as conn:
            while not stop.is_set():
                b = conn.execute(
                    sa.text("SELECT balance_micros, reserved_micros FROM accounts WHERE id = :i"),
                    {"i": t.account_id},
                ).one()
                conn.rollback()
                if b[0] < 0 or b[0] - b[1] < 0:
                    low.append(b)
                time.sleep(0.02)
        eng.dispose()

    def one(i):
        rnd = random.Random(i)
        body = {
            "model": "local/tiny-b",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "count " * rnd.randint(1, 20)}],
        }
        kind = rnd.choice(["plain", "stream", "stream", "fail", "disconnect"])
        c = client  # one shared client: making one costs ~0.3 s of CPU (SSL context)
        if True:
            if kind == "plain":
                return c.post(CHAT, json=body).status_code
            if kind == "fail":
                body["fake_fail_after"] = rnd.randint(0, 5)
            with c.stream("POST", CHAT, json={**body, "stream": True}) as rv:
                if kind == "disconnect" and rv.status_code == 200:
                    next(rv.iter_lines())
                    return rv.status_code
                text = rv.read().decode()
                if rv.status_code == 200:
                    assert text.endswith("data: [DONE]\n\n")
                return rv.status_code

    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    client = httpx.Client(base_url=server.base, headers=t.headers, timeout=30, limits=limits)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(24) as pool:
            codes = Counter(pool.map(one, range(240)))
    finally:
        stop.set()
        watcher.join()
        client.close()
        server.stop()
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:4000]
    assert set(codes) <= {200, 402}, codes
    assert codes[200] >= 20 and codes[402] >= 1, codes
    assert not low
    price = MODELS[1]
    with app.app_context(), db.read() as conn:
        inv = invariants.check(conn, t.account_id)
        rows = conn.execute(sa.select(usage_logs).where(usage_logs.c.account_id == t.account_id))
        rows = rows.mappings().all()
    assert inv["reserved"] == 0
    assert inv["balance"] == deposit - inv["billed"] >= 0
    assert len(rows) == codes[200]
    for r in rows:
        expected = ledger.cost_micros(
            r["prompt_tokens"],
            r["completion_tokens"],
            price.input_price_micros_per_mtok,
            price.output_price_micros_per_mtok,
        )
        assert r["cost_micros"] == expected
    assert {r["status"] for r in rows} >= {"success", "error"}
    app.extensions["db"].dispose()
