"""The evals harness against the gateway's real traffic endpoints (issue #15), in-process: the app
with fake engines answers `evals.traffic_api.TrafficAPI` over `httpx.WSGITransport`, so the judge
and the export read and write through the same HTTP routes a deployment serves (the wall between
evals and serving is HTTP; the harness code never imports serving)."""

from __future__ import annotations

import httpx

from evals.datasets import traffic_log
from evals.judge import judge_pairs
from evals.traffic_api import TrafficAPI
from serving import compare
from tests.serving.test_traffic import FEEDBACK, POOL, _eval_account


def test_judge_and_export_through_the_real_endpoints(api, app, engines, tmp_path, monkeypatch):
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path / "home"))
    app.config["EVAL_ACCOUNT"] = _eval_account(api)
    t = api.tenant(capture_rate=1.0, compare_rate=1.0, pool=POOL)
    # every engine answers with this text: a judge that always names the first answer it sees
    engines.reply = "The first answer is better. [[A]]"
    rids = []
    for i in range(4):
        msgs = [{"role": "user", "content": f"question number {i}"}]
        rids.append(api.chat(t, model="auto", messages=msgs).headers["X-Request-Id"])
    assert compare.get(app).drain()
    assert api.client.post(FEEDBACK, json={"request_id": rids[0], "rating": 1}, headers=t.headers)

    with TrafficAPI("http://gateway.test", t.key, transport=httpx.WSGITransport(app=app)) as gw:
        assert len(gw.pairs(page=3)) == 4  # paged by the gateway's opaque cursor
        models = {m["id"]: m for m in gw.models()}
        report = judge_pairs(gw)  # default judge: the catalog's dearest model
        dearest = max(models, key=lambda m: models[m]["pricing"]["output_micros_per_mtok"])
        assert report.judge == dearest
        # position bias in both orders -> ties, never a win
        assert (report.judged, report.errors, report.winners["tie"]) == (4, 0, 4)
        assert judge_pairs(gw, dearest).judged == 0  # judged pairs are not judged again
        stored = gw.pairs()
        v = traffic_log.export(gw)
    assert all([x["judge"] for x in p["verdicts"]] == [dearest] for p in stored)
    assert all(p["verdicts"][0]["detail"]["consistent"] is False for p in stored)
    assert v.counts["pairs"] == 4 and v.counts["labels_verdict"] == 4
    assert v.counts["labels_feedback"] == 1
    prefs = traffic_log.load_preferences(v.version)
    verdicts = prefs[prefs["source"] == "verdict"]
    assert set(verdicts["outcome"]) == {0.5}
    assert set(verdicts["model_a"]) | set(verdicts["model_b"]) == set(POOL)
    assert sorted(verdicts["prompt"]) == [f"question number {i}" for i in range(4)]
    fb = prefs[prefs["source"] == "feedback"]
    assert fb["prompt"].tolist() == ["question number 0"] and fb["outcome"].tolist() == [1.0]
