"""Audit the installed dependencies for known vulnerabilities (`make audit`; CI: .ci/run).

pip-audit reads every distribution installed in this virtualenv (what `make install` resolved from
pyproject.toml, development and research tools included; the project itself is skipped) and asks
PyPI's vulnerability data about each exact version. Then this script decides:

- a vulnerability with a fixed version fails the audit: upgrade (or pin) to the fix;
- one with no fix yet fails too, unless `.ci/audit-ignore.txt` lists its id with a reason; an
  ignored one fails again the day a fix is published (its entry then has to go);
- distributions PyPI could not answer for (a local build such as torch `+cpu`) are listed; if it
  answered for none, the audit did not happen and fails, or with --allow-unreachable (CI on a
  machine whose PyPI mirror does not serve the per-version JSON API) says so loudly and passes.

pip-audit does the collecting and the querying; this wrapper only adds the ignore rule above (its
own `--ignore-vuln` would keep ignoring a vulnerability after a fix appears).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
IGNORE_FILE = HERE / "audit-ignore.txt"


def read_ignores(path: Path) -> dict[str, str]:
    """`ID  reason...` per line; `#` starts a comment. Every id needs a reason."""
    out: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        vid, _, reason = line.partition(" ")
        if not reason.strip():
            sys.exit(f"{path}:{n}: {vid} has no reason")
        out[vid] = reason.strip()
    return out


def judge(report: dict, ignores: dict[str, str]) -> tuple[list[str], list[str], list[str], int]:
    """(failures, accepted, skipped, audited) from pip-audit's JSON report."""
    failures: list[str] = []
    accepted: list[str] = []
    skipped: list[str] = []
    audited = 0
    for dep in report["dependencies"]:
        if "skip_reason" in dep:
            skipped.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        audited += 1
        for v in dep.get("vulns", []):
            ids = {v["id"], *v.get("aliases", [])}
            what = f"{dep['name']} {dep['version']} {v['id']}"
            fixes = v.get("fix_versions") or []
            listed = sorted(ids & ignores.keys())
            if fixes:
                failures.append(f"{what}: fixed in {', '.join(fixes)}")
            elif not listed:
                failures.append(f"{what}: no fix yet; add it to {IGNORE_FILE.name} with a reason")
            else:
                accepted.append(f"{what}: no fix yet; ignored ({ignores[listed[0]]})")
    return failures, accepted, skipped, audited


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--allow-unreachable", action="store_true")
    a = p.parse_args(argv)
    ignores = read_ignores(IGNORE_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        argv_ = [sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off",
                 "--format", "json", "--output", str(out)]  # fmt: skip
        proc = subprocess.run(argv_, capture_output=True, text=True)
        if not out.exists():
            print(proc.stdout + proc.stderr)
            return 1
        report = json.loads(out.read_text())
    failures, accepted, skipped, audited = judge(report, ignores)
    print(f"pip-audit: {audited} distributions audited, {len(skipped)} not answered for")
    for line in accepted:
        print(f"  accepted  {line}")
    for line in failures:
        print(f"  FAIL      {line}")
    if audited == 0:
        print("NOT AUDITED: the vulnerability service answered for no distribution")
        for line in skipped[:5]:
            print(f"  {line}")
        return 0 if a.allow_unreachable else 1
    for line in skipped:
        print(f"  skipped   {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
