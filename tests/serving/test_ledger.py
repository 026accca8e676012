"""Ledger and rate-limit storage on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from serving import accounts, db, keys, ledger
from serving.errors import ApiError
from serving.ratelimit import SQLStorage
from serving.schema import reservations
from serving.testing.fakes import FakeEngines, FakeRouter
from tests.serving import invariants
from tests.serving.conftest import build_app


@pytest.fixture
def store(db_url, tmp_path):
    app = build_app(db_url, tmp_path, FakeEngines(), FakeRouter())
    with app.app_context():
        yield app
    app.extensions["db"].dispose()


def usage(rid, account_id, **kw):
    return {
        "id": rid,
        "account_id": account_id,
        "requested_model": "m",
        "served_model": "m",
        "status": "success",
        "stream": False,
        **kw,
    }


def new_account(credits=1_000):
    with db.write() as conn:
        return accounts.create_account(conn, f"a{time.time_ns()}@x.io", None, credits)


def test_cost_rounds_up_per_request():
    assert ledger.cost_micros(1, 0, 150_000, 600_000) == 1  # 0.15 micro-credits -> 1
    assert ledger.cost_micros(1_000_000, 1_000_000, 150_000, 600_000) == 750_000
    assert ledger.cost_micros(0, 0, 1, 1) == 0
    assert ledger.credits_to_micros("12.5") == 12_500_000
    with pytest.raises(ValueError):
        ledger.credits_to_micros("0.0000001")


def test_reserve_settle_release(store):
    acct = new_account(1_000)
    ledger.reserve(acct, None, "r1", 600, 60)
    with pytest.raises(ApiError) as e:
        ledger.reserve(acct, None, "r2", 500, 60)  # only 400 available
    assert e.value.status == 402
    s = ledger.settle("r1", acct, 600, 250, usage("r1", acct))
    assert s.charged == 250 and not s.late
    assert ledger.settle(
        "r1", acct, 600, 250, usage("r1b", acct)
    ).late  # idempotent: no double hold
    with db.read() as conn:
        inv = invariants.check(conn, acct)
    assert inv["reserved"] == 0
    # cost above the hold is capped at the hold: the balance never goes negative
    ledger.reserve(acct, None, "r3", 100, 60)
    assert ledger.settle("r3", acct, 100, 10_000, usage("r3", acct)).charged == 100
    with db.read() as conn:
        invariants.check(conn, acct)


def test_reserve_refuses_revoked_key_and_inactive_account(store):
    acct = new_account(10_000)
    with db.write() as conn:
        row, _ = keys.create(conn, b"s", acct, "k", [])
    ledger.reserve(acct, row["id"], "ok", 10, 60)
    with db.write() as conn:
        keys.revoke(conn, acct, row["id"])
    with pytest.raises(ApiError) as e:
        ledger.reserve(acct, row["id"], "no", 10, 60)
    assert e.value.status == 403 and e.value.code == "key_revoked"
    with db.write() as conn:
        email = conn.execute(
            sa.text("SELECT email FROM accounts WHERE id=:i"), {"i": acct}
        ).scalar()
        accounts.deactivate(conn, email)
    with pytest.raises(ApiError) as e:
        ledger.reserve(acct, None, "no2", 10, 60)
    assert e.value.code == "account_deactivated"


def test_expired_reservations_are_released(store):
    acct = new_account(1_000)
    ledger.reserve(acct, None, "dead", 700, ttl_s=-1)  # a worker crashed holding 700
    ledger.reserve(acct, None, "live", 200, ttl_s=60)
    assert ledger.release_expired(db.get_engine()) == 1
    assert ledger.release_expired(db.get_engine()) == 0
    with db.read() as conn:
        assert invariants.check(conn, acct)["reserved"] == 200
        status = conn.execute(sa.select(reservations.c.status).where(reservations.c.id == "dead"))
        assert status.scalar() == "expired"
    # the crashed request's late settlement charges what is still available, never more
    s = ledger.settle("dead", acct, 700, 900, usage("dead", acct))
    assert s.late and s.charged == 800
    ledger.settle("live", acct, 200, 200, usage("live", acct))
    with db.read() as conn:
        assert invariants.check(conn, acct)["balance"] == 0


def test_a_dead_holders_reservations_are_released(store):
    """Each reservation names its holder (host:boot:pid); `release_holder` frees the open ones of
    a process that is gone (the gunicorn master calls it for a reaped worker) and no other."""
    acct = new_account(1_000)
    me = ledger.holder_id()
    assert me.endswith(f":{os.getpid()}") and ledger.holder_id(1) != me
    ledger.reserve(acct, None, "a", 300, ttl_s=3600)
    ledger.reserve(acct, None, "b", 200, ttl_s=3600)
    ledger.settle("b", acct, 200, 50, usage("b", acct))
    assert ledger.release_holder(db.get_engine(), ledger.holder_id(1)) == 0
    assert ledger.release_holder(db.get_engine(), me) == 1
    assert ledger.release_holder(db.get_engine(), me) == 0
    with db.read() as conn:
        state = invariants.check(conn, acct)
        rows = dict(conn.execute(sa.select(reservations.c.id, reservations.c.status)).all())
        holders = set(conn.execute(sa.select(reservations.c.holder)).scalars())
    assert state == {"balance": 950, "reserved": 0, "billed": 50}
    assert rows == {"a": "abandoned", "b": "settled"} and holders == {me}


def test_concurrent_reservations_never_overdraw(store):
    acct = new_account(10_000)
    engine = db.get_engine()
    ok, refused = [], []
    lock = threading.Lock()

    def one(i):
        with store.app_context():
            rid = f"c{i}"
            try:
                ledger.reserve(acct, None, rid, 300, 60)
            except ApiError as e:
                assert e.status == 402
                with lock:
                    refused.append(i)
                return
            with lock:
                ok.append(i)
            ledger.settle(rid, acct, 300, 100 + i % 7, usage(rid, acct))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(200)))
    with engine.connect() as conn:
        inv = invariants.check(conn, acct)
    assert inv["reserved"] == 0 and inv["balance"] >= 0
    assert inv["balance"] == 10_000 - sum(100 + i % 7 for i in ok)
    assert refused  # the money ran out part way
    assert len(ok) + len(refused) == 200


def test_sql_rate_limit_storage(store):
    s = SQLStorage(db.get_engine())
    assert s.check()
    assert s.incr("k", 60) == 1
    assert s.incr("k", 60, amount=5) == 6
    assert s.get("k") == 6 and s.get("other") == 0
    assert time.time() < s.get_expiry("k") <= time.time() + 60
    assert s.incr("short", 1) == 1
    time.sleep(1.1)
    assert s.get("short") == 0
    assert s.incr("short", 1) == 1  # a new window starts from zero
    s.clear("k")
    assert s.get("k") == 0
    assert s.purge_expired() >= 0


def test_group_commit_runs_queued_writes_in_one_transaction_and_isolates_a_failure(
    tmp_path, monkeypatch
):
    """Writers queued behind the write lock share the next transaction; one that raises is
    rolled back alone and its caller gets the error, the others commit."""
    from serving import fastsql

    engine = db.make_engine(f"sqlite:///{tmp_path / 'group.db'}")
    d = fastsql.for_engine(engine)
    d.transaction(lambda cur: cur.execute("CREATE TABLE t (v INTEGER)"))
    batches: list[int] = []
    run = d._run
    monkeypatch.setattr(d, "_run", lambda batch: (batches.append(len(batch)), run(batch)))
    gate = threading.Event()

    def first(cur):
        gate.wait(5)  # holds the write lock while the others queue
        cur.execute("INSERT INTO t VALUES (0)")
        return 0

    def insert(v):
        def job(cur):
            cur.execute("INSERT INTO t VALUES (?)", (v,))
            return v

        return job

    def failing(cur):
        cur.execute("INSERT INTO t VALUES (99)")
        raise ApiError(429, "refused inside the transaction")

    with ThreadPoolExecutor(8) as ex:
        lead = ex.submit(d.transaction, first)
        time.sleep(0.2)
        rest = [ex.submit(d.transaction, insert(v)) for v in (1, 2, 3)]
        bad = ex.submit(d.transaction, failing)
        time.sleep(0.2)
        gate.set()
        assert lead.result(5) == 0 and [f.result(5) for f in rest] == [1, 2, 3]
        with pytest.raises(ApiError):
            bad.result(5)
    assert batches == [1, 4]
    with d.read() as cur:
        cur.execute("SELECT v FROM t ORDER BY v")
        assert [r[0] for r in cur.fetchall()] == [0, 1, 2, 3]
    engine.dispose()


def test_the_wal_starts_over_under_constant_writes_from_two_processes(tmp_path, monkeypatch):
    """Two servers' executors (their own flock each, as two gunicorn workers) write without a
    pause: the checkpoint thread still starts the WAL over, so the file (and the index every worker
    maps) stays small instead of growing for as long as the load lasts; no write fails."""
    from serving import fastsql

    monkeypatch.setattr(fastsql, "CHECKPOINT_INTERVAL_S", 0.05)
    monkeypatch.setattr(fastsql, "WAL_RESET_BYTES", 2**20)
    path = tmp_path / "wal.db"
    engines = [db.make_engine(f"sqlite:///{path}") for _ in range(2)]
    execs = [fastsql.for_engine(e) for e in engines]
    execs[0].transaction(lambda cur: cur.execute("CREATE TABLE t (v BLOB)"))
    stop = threading.Event()
    written = [0, 0]

    def writer(i: int) -> None:
        while not stop.is_set():
            execs[i].transaction(
                lambda cur: cur.execute("INSERT INTO t VALUES (?)", (b"x" * 4000,))
            )
            written[i] += 1

    wal_sizes = []
    with ThreadPoolExecutor(2) as ex:
        futures = [ex.submit(writer, i) for i in (0, 1)]
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.02)
            wal_sizes.append(os.path.getsize(f"{path}-wal"))
        stop.set()
        for f in futures:
            f.result(10)
    data = sum(written) * 4000  # the rows' bytes: one WAL page or more each, without checkpoints
    assert min(written) > 0
    # without a checkpoint that starts it over, the WAL outgrows the rows themselves within a second
    # (3x their bytes by the end); started over past 1 MiB it stays well under them
    assert max(wal_sizes[len(wal_sizes) // 2 :]) < data
    with execs[1].read() as cur:
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone()[0] == sum(written)
    for e in engines:
        e.dispose()
