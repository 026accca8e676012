"""The dependency audit's rule (.ci/audit.py): a vulnerability fails the audit when a fix exists,
and when none exists unless `.ci/audit-ignore.txt` gives a reason; nothing audited is no pass."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

AUDIT = Path(__file__).resolve().parents[1] / ".ci" / "audit.py"
spec = importlib.util.spec_from_file_location("ci_audit", AUDIT)
assert spec is not None and spec.loader is not None
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)


def _report(*vulns: dict, skipped: int = 0) -> dict:
    deps = [{"name": "flask", "version": "2.0.0", "vulns": list(vulns)}]
    deps += [{"name": f"s{i}", "skip_reason": "not found"} for i in range(skipped)]
    return {"dependencies": deps}


def test_a_fixable_vulnerability_fails_even_when_listed():
    rep = _report({"id": "PYSEC-1", "aliases": ["CVE-1"], "fix_versions": ["2.0.1"]})
    failures, accepted, _, audited = audit.judge(rep, {"CVE-1": "was unfixed"})
    assert audited == 1 and accepted == [] and "fixed in 2.0.1" in failures[0]


def test_an_unfixed_vulnerability_passes_only_with_a_reason():
    rep = _report({"id": "GHSA-x", "aliases": [], "fix_versions": []})
    failures, accepted, _, _ = audit.judge(rep, {})
    assert failures and not accepted
    failures, accepted, _, _ = audit.judge(rep, {"GHSA-x": "only the CLI, never served"})
    assert not failures and "only the CLI" in accepted[0]


def test_skipped_distributions_are_counted_apart():
    failures, _, skipped, audited = audit.judge(_report(skipped=2), {})
    assert (failures, len(skipped), audited) == ([], 2, 1)


def test_the_ignore_file_needs_a_reason_for_each_id(tmp_path):
    f = tmp_path / "ignore.txt"
    f.write_text("# comment\nGHSA-a  no fix; the parser is not used\n")
    assert audit.read_ignores(f) == {"GHSA-a": "no fix; the parser is not used"}
    f.write_text("GHSA-b\n")
    with pytest.raises(SystemExit):
        audit.read_ignores(f)
    assert audit.read_ignores(audit.IGNORE_FILE) is not None  # the project's own file parses
