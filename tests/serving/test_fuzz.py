"""Fuzz the gateway with schemathesis over its own OpenAPI document, with a fixed seed, against a
real gunicorn gateway on SQLite with the fake engines, all on 127.0.0.1 (serving.testing.fuzz;
`make fuzz` runs longer). Every check schemathesis has, in all four phases, stateful links
included: no 5xx, no answer the document does not describe, what it allows accepted and what it
forbids refused; the fuzzer's own key survives (it may revoke only the keys it created)."""

from __future__ import annotations

import pytest

from serving.testing import fuzz

CASES_AT_LEAST = 2000


@pytest.mark.timeout(420)
def test_fuzzing_finds_nothing(tmp_path):
    res = fuzz.run(tmp_path, max_examples=75, seed=fuzz.SEED, timeout_s=400)
    print(res.summary())
    assert res.clean, res.summary() + "\n" + res.output[-8000:]
    assert res.cases >= CASES_AT_LEAST, res.summary()
