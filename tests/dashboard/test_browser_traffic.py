"""Learning from your own traffic (issue #15) in headless Chromium against a real gunicorn gateway:
a key that captures and compares every `auto` request, the pairs the gateway makes after the
answers, votes on the Compare page (anonymised until the vote), and thumbs up / down on the Usage
page, each checked through the traffic API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from serving.testing.server import PASSWORD, Server
from tests.dashboard.ui import at, severe, shot, text, visible, wait

EMAIL = "dee@example.com"
POOL = ("local/tiny-a", "local/tiny-b")
PROMPTS = ("Sort a list in Python", "Explain recursion", "Name three prime numbers")


def pairs_of(gw: httpx.Client, n: int, timeout: float = 15) -> list[dict[str, Any]]:
    """The account's pairs once there are `n` (made after the answers, in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        data: list[dict[str, Any]] = gw.get("/api/v1/traffic/pairs").json()["data"]
        if len(data) >= n or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


def shown_pair(d: Any, pairs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The pair the Compare page shows, known by its conversation (the page names no pair id)."""
    convo = text(d, "#pair-messages")
    (pair,) = [p for p in pairs.values() if f"user: {p['messages'][0]['content']}" == convo]
    return pair


def vote(d: Any, gw: httpx.Client, pair: dict[str, Any], side: str) -> str:
    """Vote on the shown pair with the button of `side` ("a": left, "b": right, "tie"); returns
    the winner as the API recorded it, after checking the models revealed match it."""
    card = visible(d, "#pair")
    for model in POOL:  # anonymised: no model name on the page before the vote
        assert model not in card.text
    assert not d.find_element(By.ID, "model-a").is_displayed()
    assert {text(d, "#answer-a"), text(d, "#answer-b")} == {pair["answer_a"], pair["answer_b"]}
    d.find_element(By.CSS_SELECTOR, f"#vote-buttons [data-vote='{side}']").click()
    left, right = visible(d, "#model-a").text, visible(d, "#model-b").text
    assert {left, right} == {pair["model_a"], pair["model_b"]} == set(POOL)
    for b in d.find_elements(By.CSS_SELECTOR, "#vote-buttons [data-vote]"):
        assert not b.is_enabled()  # one vote per pair on the page
    votes = [p for p in gw.get("/api/v1/traffic/pairs").json()["data"] if p["id"] == pair["id"]]
    (recorded,) = votes[0]["votes"]
    assert recorded["source"] == "human"
    winner = str(recorded["winner"])
    # the page may swap the sides: the vote is recorded for the model that was on that side
    if side == "tie":
        assert winner == "tie"
    else:
        assert pair["model_" + winner] == (left if side == "a" else right)
    return winner


def chosen(d: Any) -> dict[str, str]:
    """The Usage page's pressed thumbs: request id -> "1" (up) or "-1" (down)."""
    out = {}
    for b in d.find_elements(By.CSS_SELECTOR, "#usage-table [data-rate][aria-pressed='true']"):
        assert "chosen" in str(b.get_attribute("class")).split()
        out[str(b.get_attribute("data-request"))] = str(b.get_attribute("data-rate"))
    return out


def test_compare_and_feedback(gateway: Server, browser: Any, artifacts: Path) -> None:
    d = browser
    d.get(gateway.url + "/dashboard/keys")
    at(d, "/dashboard/login")
    visible(d, "#email").send_keys(EMAIL)
    d.find_element(By.ID, "password").send_keys(PASSWORD, Keys.ENTER)
    at(d, "/dashboard/keys")

    # A key that captures every request (the form's Capture field, a percentage)...
    visible(d, f"#create-pool input[value='{POOL[0]}']")
    d.find_element(By.ID, "key-name").send_keys("Learning")
    for model in POOL:
        d.find_element(By.CSS_SELECTOR, f"#create-pool input[value='{model}']").click()
    d.find_element(By.ID, "key-capture").clear()
    d.find_element(By.ID, "key-capture").send_keys("100")
    d.find_element(By.CSS_SELECTOR, "#create-form button[type=submit]").click()
    raw = visible(d, "#raw-key").text
    assert "100%" in visible(d, "#keys-table tr[data-key] .capture").text
    d.find_element(By.ID, "dismiss-key").click()
    gw = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {raw}"}, timeout=10)
    # ...and compares every captured `auto` request (the API; the form has no such field)
    (key,) = gw.get("/api/v1/inference/keys").json()["data"]
    patched = gw.patch(f"/api/v1/inference/keys/{key['id']}", json={"compare_rate": 1}).json()
    assert (patched["capture_rate"], patched["compare_rate"]) == (1, 1)

    # Three `auto` requests from the SDK (one streamed); each answer is captured and compared.
    client = openai.OpenAI(api_key=raw, base_url=gateway.url + "/api/v1/inference", max_retries=0)
    ids, served = [], {}
    for i, prompt in enumerate(PROMPTS):
        messages = [{"role": "user", "content": prompt}]
        rv = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, stream=i == 2
        )
        if i == 2:
            model = {chunk.model for chunk in rv.parse()}.pop()
        else:
            model = rv.parse().model
        ids.append(rv.headers["x-request-id"])
        served[ids[-1]] = model
    pairs = {p["id"]: p for p in pairs_of(gw, len(PROMPTS))}
    assert sorted(p["request_id"] for p in pairs.values()) == sorted(ids)
    for p in pairs.values():  # the served answer and another pool model's, A/B drawn at random
        assert p["model_" + p["served"]] == served[p["request_id"]]
        assert {p["model_a"], p["model_b"]} == set(POOL) and p["votes"] == []

    # The Compare page: every unvoted pair, one at a time, anonymised until the vote.
    d.get(gateway.url + "/dashboard/compare")
    wait(d).until(lambda d: text(d, "#pair-progress") == "Pair 1 of 3")
    first = shown_pair(d, pairs)
    shot(d, artifacts, "compare")
    voted = {first["id"]: vote(d, gw, first, "a")}
    next_button = visible(d, "#next-pair")
    assert next_button == d.switch_to.active_element  # the keyboard goes on from there
    shot(d, artifacts, "compare-voted")
    for n, side in ((2, "b"), (3, "tie")):
        next_button.click()
        wait(d).until(lambda d, n=n: text(d, "#pair-progress") == f"Pair {n} of 3")
        pair = shown_pair(d, pairs)
        assert pair["id"] not in voted and not d.find_element(By.ID, "next-pair").is_displayed()
        assert all(b.is_enabled() for b in d.find_elements(By.CSS_SELECTOR, "[data-vote]"))
        voted[pair["id"]] = vote(d, gw, pair, side)
        next_button = visible(d, "#next-pair")
    next_button.click()
    visible(d, "#no-pairs")
    assert not d.find_element(By.ID, "pair").is_displayed()
    assert gw.get("/api/v1/traffic/pairs", params={"unvoted": "true"}).json()["data"] == []
    d.refresh()  # voted pairs are not offered again
    visible(d, "#no-pairs")
    assert severe(d) == []

    # The Usage page: thumbs up on the first request, thumbs down on the second, and a double
    # click on the third's thumbs up (one rating: one record).
    d.get(gateway.url + "/dashboard/usage")
    for rid, rating, double in ((ids[0], 1, False), (ids[1], -1, False), (ids[2], 1, True)):
        button = visible(d, f"#usage-table tr[data-usage='{rid}'] [data-rate='{rating}']")
        if double:
            ActionChains(d).double_click(button).perform()
        else:
            button.click()
        wait(d).until(lambda d, rid=rid: rid in chosen(d))
        assert text(d, "#flash") == "Thanks: your rating was recorded."
    d.find_element(By.CSS_SELECTOR, f"tr[data-usage='{ids[0]}'] [data-rate='1']").click()
    want = {ids[0]: "1", ids[1]: "-1", ids[2]: "1"}
    wait(d).until(lambda d: chosen(d) == want)  # (the rating already chosen: nothing changes)
    shot(d, artifacts, "usage-feedback")
    assert severe(d) == []

    # The export the evals harness reads: the feedback and the votes, each on its own request.
    rv = gw.get("/api/v1/traffic/export")
    assert rv.headers["content-type"].startswith("application/x-ndjson")
    records = [orjson.loads(line) for line in rv.content.splitlines()]
    fb = {r["request_id"]: r for r in records if r["kind"] == "feedback"}
    assert len(fb) == sum(r["kind"] == "feedback" for r in records)  # one record per request
    assert {rid: r["rating"] for rid, r in fb.items()} == {ids[0]: 1, ids[1]: -1, ids[2]: 1}
    for rid, r in fb.items():
        assert r["model"] == served[rid] and r["key_id"] == key["id"]
        assert r["messages"] == [{"role": "user", "content": PROMPTS[ids.index(rid)]}]
    exported = {r["id"]: [v["winner"] for v in r["votes"]] for r in records if r["kind"] == "pair"}
    assert exported == {pid: [w] for pid, w in voted.items()}
    gw.close()
