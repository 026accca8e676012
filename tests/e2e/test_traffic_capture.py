"""Learning from traffic through real vLLM engines (issue #15): a key that captures, a gateway with
an evaluation account, and a captured `auto` request from the official OpenAI SDK that becomes a
side-by-side pair (the other pool model's answer billed to the evaluation account), then a verdict,
feedback and the NDJSON export over the traffic API."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import sqlalchemy as sa

from tests.e2e.conftest import API, Stack, free_port, start_gateway, stop, wait_until

pytestmark = pytest.mark.vllm

POOL = ["local/tiny-a", "local/tiny-b"]
EVAL = "evals@e2e.example"


def test_a_captured_auto_request_becomes_a_pair_billed_to_the_eval_account(stack: Stack):
    stack.cli("accounts", "create", EVAL, "--credits", "5")
    key = stack.cli(
        "keys", "create", "--account", stack.email, "--name", "learn", "--pool", ",".join(POOL),
        "--capture", "1", "--compare", "1",
    ).splitlines()[-1]  # fmt: skip
    port = free_port()
    gw = start_gateway({**stack.env, "INFERBASE_EVAL_ACCOUNT": EVAL}, stack.home, port)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    try:
        for m in POOL:
            wait_until(
                lambda m=m: httpx.get(f"{base}{API}/models/{m}/health").json()["status"] == "ready",
                120,
                f"{m} never became ready",
            )
        client = openai.OpenAI(api_key=key, base_url=base + API, max_retries=0)
        messages = [{"role": "user", "content": "Write a haiku about otters."}]
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, max_tokens=8
        )
        rid = raw.headers["X-Request-Id"]
        rv = raw.parse()
        assert rv.model in POOL

        pairs: list[dict] = []

        def made() -> bool:
            page = httpx.get(f"{base}/api/v1/traffic/pairs", headers=auth).json()
            pairs[:] = [p for p in page["data"] if p["request_id"] == rid]
            return bool(pairs)

        wait_until(made, 60, "no pair was made from the captured request")
        [pair] = pairs
        served, other = ("a", "b") if pair["served"] == "a" else ("b", "a")
        assert pair[f"model_{served}"] == rv.model
        assert pair[f"answer_{served}"] == rv.choices[0].message.content
        assert pair[f"model_{other}"] == next(m for m in POOL if m != rv.model)
        assert pair["messages"] == messages and pair["routing"]["model"] == rv.model
        assert pair["task"] == rv.routing["task"]

        # billed: the user's account for its own request only, the evaluation account for the other
        engine = sa.create_engine(stack.env["INFERBASE_DATABASE_URL"])
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT u.id, a.email, u.served_model, u.cost_micros FROM usage_logs u "
                        "JOIN accounts a ON a.id = u.account_id WHERE u.id = :rid "
                        "OR (a.email = :eval AND u.id LIKE 'cmp_%')"
                    ),
                    {"rid": rid, "eval": EVAL},
                ).all()
        finally:
            engine.dispose()
        by_email = {r.email: r for r in rows}
        assert set(by_email) == {stack.email, EVAL} and len(rows) == 2
        assert by_email[stack.email].served_model == rv.model
        assert by_email[EVAL].served_model == pair[f"model_{other}"]
        assert by_email[EVAL].cost_micros > 0

        rv2 = httpx.post(
            f"{base}/api/v1/traffic/pairs/{pair['id']}/verdicts",
            json={"judge": "local/tiny-b", "winner": "tie"},
            headers=auth,
        )
        assert rv2.status_code == 201
        fb = httpx.post(
            f"{base}{API}/feedback", json={"request_id": rid, "rating": 1}, headers=auth
        )
        assert fb.status_code == 201 and fb.json()["messages"] == messages
        export = httpx.get(f"{base}/api/v1/traffic/export", headers=auth)
        assert export.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(x) for x in export.text.splitlines()]
        mine = [x for x in lines if x["request_id"] == rid]
        assert [x["kind"] for x in mine] == ["pair", "feedback"]
        assert mine[0]["verdicts"][0]["judge"] == "local/tiny-b"
    finally:
        stop(gw)
