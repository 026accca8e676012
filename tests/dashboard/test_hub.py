"""The event hub in-process: late-committed rows, model health changes, per-socket floors."""

from __future__ import annotations

from pathlib import Path

from serving import accounts, create_app, db, ledger
from serving.dashboard.hub import LOOKBACK, _Cursor, get_hub
from serving.testing.fakes import FakeEngines


def test_cursor_delivers_late_commits_once() -> None:
    cursor = _Cursor([1, 2, 3])  # what existed when the first socket opened
    assert cursor.fresh([1, 2, 3]) == set()
    assert cursor.fresh([1, 2, 3, 5, 6]) == {5, 6}
    # id 4 was assigned before 5 but committed after it: still delivered, and only once
    assert cursor.fresh([4, 5, 6]) == {4}
    assert cursor.fresh([4, 5, 6, 7]) == {7}
    assert cursor.since() == 0 and cursor.high == 7
    far = 7 + LOOKBACK + 10
    assert cursor.fresh([far]) == {far}
    assert cursor.since() == far - LOOKBACK and all(i > cursor.since() for i in cursor.seen)


def test_hub_pushes_balance_and_model_health_changes(tmp_path: Path, any_db_url: str) -> None:
    engines = FakeEngines()
    app = create_app(
        {
            "DATABASE_URL": any_db_url,
            "HOME": str(tmp_path),
            "AUTO_MIGRATE": True,
            "ENGINES": engines,
            "EVENTS_POLL_S": 60,  # this test drives the polls itself
            "EVENTS_HEALTH_S": 3600,
        }
    )
    with app.app_context(), db.write() as conn:
        a = accounts.create_account(conn, "a@example.com", "pw", 1_000)
        b = accounts.create_account(conn, "b@example.com", "pw", 1_000)
    hub = get_hub(app)
    sub_a, sub_b = hub.subscribe(a), hub.subscribe(b)
    try:
        with app.app_context(), db.write() as conn:
            ledger.deposit(conn, a, 500, "top-up")
        hub.poll([a, b])
        hub.poll([a, b])
        hub.poll_models()  # the first look reports every model (the hub's thread may beat us)
        events_a, events_b = drain(sub_a), drain(sub_b)
        balance = [e for e in events_a if e["type"] == "balance"]
        assert len(balance) == 1  # delivered once
        assert balance[0]["data"]["available_micros"] == 1_500
        assert [t["amount_micros"] for t in balance[0]["transactions"]] == [500]
        # not b's money, and b's own opening deposit is history
        assert all(e["type"] == "model" for e in events_b)
        seen = {e["data"]["model"]: e["data"]["status"] for e in events_a if e["type"] == "model"}
        assert seen == {m.id: "ready" for m in engines.models()}
        engines.health_["local/tiny-b"] = "loading"
        hub.poll_models()
        for sub in (sub_a, sub_b):  # model health is public: everyone hears it
            assert [(e["data"]["model"], e["data"]["status"]) for e in drain(sub)] == [
                ("local/tiny-b", "loading")
            ]
        hub.poll_models()
        assert sub_a.queue.empty()  # only changes are pushed
    finally:
        hub.unsubscribe(sub_a)
        hub.unsubscribe(sub_b)
        db.get_engine(app).dispose()
    assert hub.count() == 0


def drain(sub):  # type: ignore[no-untyped-def]
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out
