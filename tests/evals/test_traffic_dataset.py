"""The `traffic` dataset: reproducible versions, the preference table and the time split."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from evals import datasets as D
from evals.datasets import traffic_log as T
from evals.datasets.schema import PREFERENCE_COLUMNS
from evals.traffic_api import TrafficAPI
from tests.evals.fake_gateway import KEY, FakeGateway, pair


def records(n: int = 10) -> list[dict]:
    out = []
    for i in range(n):
        p = {"kind": "pair", **pair(i, "m-small", "m-big", f"ans a {i}", f"ans b {i}")}
        p["votes"] = [
            {"winner": "a" if i % 2 else "b", "created_at": p["created_at"], "source": "human"}
        ]
        p["verdicts"] = [
            {"judge": "m-big", "winner": "tie", "created_at": "2026-11-29T14:00:00Z", "detail": {}},
            {"judge": "m-mid", "winner": "a", "created_at": "2026-11-29T13:59:00Z", "detail": {}},
        ]
        out.append(p)
    out.append(
        {
            "kind": "feedback",
            "id": "fb_1",
            "created_at": "2026-11-29T13:30:30Z",
            "request_id": "req_x",
            "key_id": "key_1",
            "model": "m-small",
            "task": "chat",
            "routing": None,
            "messages": [{"role": "user", "content": "hello there"}],
            "rating": -1,
            "comment": None,
        }
    )
    out.append({**out[-1], "id": "fb_2", "messages": None, "rating": 1})  # not captured
    return out


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_same_records_give_the_same_bytes_and_version_whatever_the_order(home):
    recs = records()
    shuffled = [dict(r) for r in recs]
    random.Random(1).shuffle(shuffled)
    for r in shuffled:  # nested labels in another order too
        if r.get("verdicts"):
            r["verdicts"] = list(reversed(r["verdicts"]))
    assert T.encode(recs) == T.encode(shuffled)
    v1 = T.write_version(recs)
    data1 = (v1.path / T.RECORDS).read_bytes()
    v2 = T.write_version(shuffled)
    assert v1.version == v2.version and (v2.path / T.RECORDS).read_bytes() == data1
    assert v1.path == home / "datasets" / "traffic" / v1.version
    # one more vote is a new version, and LATEST follows it
    recs[0]["votes"].append({"winner": "tie", "created_at": "2026-11-29T15:00:00Z"})
    v3 = T.write_version(recs)
    assert v3.version != v1.version and T.latest_version() == v3.version
    assert T.read_records(v1.version) == [json.loads(x) for x in data1.decode().splitlines()]


def test_the_manifest_counts_what_the_version_holds(home):
    v = T.write_version(records())
    man = json.loads((v.path / T.MANIFEST).read_text())
    assert man["version"] == v.version and man["sha256"].startswith(v.version)
    c = man["counts"]
    assert (c["records"], c["pairs"], c["feedback"]) == (12, 10, 2)
    # 10 pairs x (1 vote + 2 verdicts) + 1 captured thumbs down; the uncaptured one has no prompt
    assert (c["labels"], c["labels_vote"], c["labels_verdict"], c["labels_feedback"]) == (
        31,
        10,
        20,
        1,
    )
    assert c["train"] + c["test"] == 31


def test_preferences_are_one_row_per_label():
    prefs = T.preferences(records())
    assert list(prefs.columns) == [c for c in PREFERENCE_COLUMNS if c != "split"]
    first = prefs[prefs["record_id"] == "pair_001"]
    assert sorted(first["source"]) == ["verdict", "verdict", "vote"]
    assert set(first["judge"].dropna()) == {"m-big", "m-mid"}
    assert first.set_index("judge")["outcome"].to_dict()["m-big"] == 0.5
    assert first[first["source"] == "vote"]["outcome"].item() == 1.0  # i odd: a won
    fb = prefs[prefs["kind"] == "feedback"]
    assert fb[["model_a", "outcome", "prompt"]].values.tolist() == [["m-small", 0.0, "hello there"]]
    assert fb["model_b"].isna().all()
    assert prefs["created_at"].is_monotonic_increasing


def test_time_split_holds_out_the_newest_records_whole():
    prefs = T.preferences(records())
    split = T.time_split(prefs, test_frac=0.3)
    test, train = prefs[split == "test"], prefs[split == "train"]
    assert test["record_id"].nunique() == 3  # floor(0.3 * 11 labelled records)
    assert test["created_at"].min() >= train["created_at"].max()
    assert not set(test["record_id"]) & set(train["record_id"])  # a record's labels stay together
    assert (T.time_split(prefs, 0.0) == "train").all()
    with pytest.raises(ValueError):
        T.time_split(prefs, 1.0)


def test_the_registry_loads_the_latest_version_and_lists_it_apart(home):
    with pytest.raises(D.DatasetError, match="traffic export"):
        D.load("traffic")
    T.write_version(records())
    df = D.load("traffic")
    assert list(df.columns) == list(PREFERENCE_COLUMNS)
    assert set(df["split"]) == {"train", "test"} and (df["dataset"] == "traffic").all()
    assert df["outcome"].dtype == "float64"
    assert "traffic" not in D.list_datasets() and D.list_datasets("preferences") == ["traffic"]
    # not cached: a new export is read at once
    recs = records(20)
    T.write_version(recs)
    assert D.load("traffic")["record_id"].nunique() == 21


def test_export_from_the_gateway_writes_a_version(home):
    recs = records()
    pairs = [{k: v for k, v in r.items() if k != "kind"} for r in recs if r["kind"] == "pair"]
    feedback = [
        {k: v for k, v in r.items() if k != "kind"} for r in recs if r["kind"] == "feedback"
    ]
    gw = FakeGateway(pairs=pairs, feedback=feedback, judge=lambda m, msgs: "")
    with TrafficAPI("http://gateway.test", KEY, transport=gw.transport()) as api:
        v = T.export(api)
        since = T.export(api, since="2026-11-29T13:05:00Z")
    assert v.version == T.write_version(recs).version  # the same bytes as writing them directly
    assert since.counts["pairs"] == 5 and since.version != v.version
    assert isinstance(T.load_preferences(v.version), pd.DataFrame)


def test_a_request_rated_twice_counts_once_by_its_latest_rating():
    recs = records()
    first = next(r for r in recs if r["id"] == "fb_1")
    changed = {**first, "id": "fb_0", "created_at": "2026-11-29T13:31:00Z", "rating": 1}
    other = {**first, "id": "fb_9", "request_id": "req_y", "created_at": "2026-11-29T13:32:00Z"}
    fb = T.preferences([*recs, changed, other]).query("kind == 'feedback'")
    # req_x: thumbs down, then up a minute later (an earlier id, so not the order of ids) -> up
    assert sorted(fb[["record_id", "outcome"]].values.tolist()) == [["fb_0", 1.0], ["fb_9", 0.0]]
