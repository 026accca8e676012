"""The judge: MT-Bench pair-v2 prompts, verdict parsing, both orders, verdicts sent over HTTP."""

from __future__ import annotations

import re

import pytest

from evals.judge import (
    JudgeError,
    combine,
    default_judge,
    judge_pairs,
    load_prompt,
    parse_verdict,
    question_text,
)
from evals.traffic_api import TrafficAPI, TrafficAPIError
from tests.evals.fake_gateway import KEY, FakeGateway, pair

MODELS = [
    {"id": "small", "pricing": {"input_micros_per_mtok": 100, "output_micros_per_mtok": 300}},
    {"id": "big", "pricing": {"input_micros_per_mtok": 1000, "output_micros_per_mtok": 3000}},
]


def _answers(messages: list[dict]) -> tuple[str, str]:
    user = messages[-1]["content"]
    a = re.search(r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End", user, re.S)
    b = re.search(r"\[The Start of Assistant B's Answer\]\n(.*?)\n\[The End", user, re.S)
    assert a and b
    return a.group(1), b.group(1)


def fair_judge(model: str, messages: list[dict]) -> str:
    """Prefers the answer that says GOOD, wherever it is shown; a tie when neither does."""
    a, b = _answers(messages)
    if "GOOD" in a and "GOOD" not in b:
        return "Assistant A is more helpful. [[A]]"
    if "GOOD" in b and "GOOD" not in a:
        return "Assistant B is more helpful. [[B]]"
    return "Both are equal. [[C]]"


def first_position_judge(model: str, messages: list[dict]) -> str:
    return "I always like the first one. [[A]]"


def gateway(judge, pairs=None) -> FakeGateway:
    pairs = pairs or [
        pair(1, "small", "big", "GOOD answer", "bad answer"),
        pair(2, "big", "small", "bad answer", "GOOD answer"),
        pair(3, "small", "big", "meh", "meh"),
    ]
    return FakeGateway(pairs=pairs, judge=judge, models=MODELS)


def api(gw: FakeGateway) -> TrafficAPI:
    return TrafficAPI("http://gateway.test", KEY, transport=gw.transport())


def test_the_pair_v2_prompt_is_mt_bench_s(data_root):
    p = load_prompt()
    assert p.name == "pair-v2"
    assert '"[[A]]" if assistant A is better' in p.system_prompt
    msgs = p.messages("Q?", "ans one", "ans two")
    assert msgs[0] == {"role": "system", "content": p.system_prompt}
    assert "[User Question]\nQ?" in msgs[1]["content"]
    assert _answers(msgs) == ("ans one", "ans two")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Explanation... [[A]]", "a"),
        ("[[B]]", "b"),
        ("It is a tie: [[C]]", "tie"),
        ('Format: "[[A]]" if A is better. My verdict: [[B]]', "b"),  # the last one counts
        ("No verdict here, [A] or [[D]]", "error"),
        ("", "error"),
    ],
)
def test_parse_verdict(text, want):
    assert parse_verdict(text) == want


@pytest.mark.parametrize(
    ("first", "swapped", "want"),
    [
        ("a", "a", "a"),
        ("b", "b", "b"),
        ("tie", "tie", "tie"),
        ("a", "b", "tie"),  # position bias: each order picks its first answer
        ("a", "tie", "tie"),
        ("a", "error", "error"),
        ("error", "b", "error"),
    ],
)
def test_both_orders_combine(first, swapped, want):
    assert combine(first, swapped) == want


def test_a_fair_judge_names_the_better_answer_in_either_position():
    gw = gateway(fair_judge)
    with api(gw) as client:
        report = judge_pairs(client, "big")
    assert (report.judged, report.errors, report.inconsistent) == (3, 0, 0)
    got = [p["verdicts"][0]["winner"] for p in gw.pairs]
    assert got == ["a", "b", "tie"]
    assert all(p["verdicts"][0]["judge"] == "big" for p in gw.pairs)
    # two games per pair, the second with the answers swapped
    assert len(gw.chat_calls) == 6
    first, second = gw.chat_calls[0][1], gw.chat_calls[1][1]
    assert _answers(first) == ("GOOD answer", "bad answer")
    assert _answers(second) == ("bad answer", "GOOD answer")
    detail = gw.pairs[1]["verdicts"][0]["detail"]
    assert detail["prompt"] == "pair-v2" and detail["consistent"] is True
    assert [g["order"] for g in detail["games"]] == ["a-b", "b-a"]


def test_a_position_biased_judge_gives_ties_not_wins():
    gw = gateway(first_position_judge)
    with api(gw) as client:
        report = judge_pairs(client, "big")
    assert report.winners == {"a": 0, "b": 0, "tie": 3}
    assert report.inconsistent == 3
    assert all(p["verdicts"][0]["detail"]["consistent"] is False for p in gw.pairs)


def test_judged_pairs_are_not_judged_again_and_other_judges_still_may():
    gw = gateway(fair_judge)
    with api(gw) as client:
        judge_pairs(client, "big")
        again = judge_pairs(client, "big")
        other = judge_pairs(client, "small")
    assert again.judged == 0 and other.judged == 3
    assert [len(p["verdicts"]) for p in gw.pairs] == [2, 2, 2]


def test_unparseable_or_failed_judge_calls_record_nothing():
    calls = []

    def flaky(model, messages):
        calls.append(1)
        a, _ = _answers(messages)
        if "too long" in a:
            return "<too long>"  # the fake gateway answers 400
        return "I cannot decide."

    pairs = [pair(1, "small", "big", "x", "y"), pair(2, "small", "big", "too long", "y")]
    gw = gateway(flaky, pairs)
    with api(gw) as client:
        report = judge_pairs(client, "big")
    assert (report.judged, report.errors) == (0, 2)
    assert all(p["verdicts"] == [] for p in gw.pairs)


def test_pairs_without_both_answers_are_skipped():
    pairs = [pair(1, "small", "big", "GOOD", "")]
    gw = gateway(fair_judge, pairs)
    with api(gw) as client:
        report = judge_pairs(client, "big")
    assert report.skipped == 1 and gw.chat_calls == []


def test_all_pages_are_read_and_limit_caps_the_work():
    pairs = [pair(i, "small", "big", "GOOD", "bad") for i in range(7)]
    gw = gateway(fair_judge, pairs)
    with api(gw) as client:
        assert len(client.pairs(page=3)) == 7
        report = judge_pairs(client, "big", limit=5)
    assert report.judged == 5
    assert [len(p["verdicts"]) for p in gw.pairs] == [1] * 5 + [0] * 2


def test_default_judge_is_the_strongest_model():
    gw = gateway(fair_judge)
    with api(gw) as client:
        report = judge_pairs(client)
    assert report.judge == "big"
    assert {m for m, _ in gw.chat_calls} == {"big"}
    with_priors = [
        {"id": "x", "routing": {"quality_prior": 0.9}, "pricing": {"output_micros_per_mtok": 1}},
        {"id": "y", "routing": {"quality_prior": 0.5}, "pricing": {"output_micros_per_mtok": 9}},
    ]
    assert default_judge(with_priors) == "x"
    with pytest.raises(JudgeError):
        default_judge([])


def test_a_bad_key_is_an_error_with_the_gateway_message():
    gw = gateway(fair_judge)
    with TrafficAPI("http://gateway.test", "inf_wrong", transport=gw.transport()) as client:
        with pytest.raises(TrafficAPIError) as err:
            client.pairs()
    assert err.value.status == 401 and "invalid API key" in err.value.message


def test_question_text_of_one_turn_and_of_a_conversation():
    assert question_text([{"role": "user", "content": "hi"}]) == "hi"
    convo = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": [{"type": "text", "text": "three"}]},
    ]
    assert question_text(convo) == "user: one\n\nassistant: two\n\nuser: three"


def test_a_pair_deleted_while_judged_is_counted_and_the_run_goes_on():
    gw = gateway(fair_judge)

    def judge_then_expire(model, messages):
        if _answers(messages)[0] == "GOOD answer":  # pair 1's first game: it expires meanwhile
            gw.pairs[:] = [p for p in gw.pairs if p["id"] != "pair_001"]
        return fair_judge(model, messages)

    gw.judge = judge_then_expire
    with api(gw) as client:
        report = judge_pairs(client, "big")
    assert (report.judged, report.errors) == (2, 1)
    assert [p["verdicts"][0]["winner"] for p in gw.pairs] == ["b", "tie"]
