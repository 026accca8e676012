"""Fuzz the gateway's HTTP API with schemathesis over the OpenAPI document the gateway serves.

A real gunicorn gateway (`serving.testing.server`: a temp SQLite database, the fake engines) on
127.0.0.1, one account with ample credits and one API key with the highest limits; then
`schemathesis run` over `/openapi.json` with every check, in all four phases: the schema's
examples, its coverage cases (each boundary and each way to break it), random fuzzing, and
stateful sequences along the spec's links (create a key, then update or revoke it; list, then the
next page; ...). Positive and negative data both: what the spec allows must be accepted and what it
forbids rejected (`positive_data_acceptance`, `negative_data_rejection`), beside no 5xx,
documented status codes, content types and response schemas. The fuzzer never fuzzes its own key
(`serving.testing.fuzz_hooks`).

    python -m serving.testing.fuzz [--max-examples N] [--seed S] [--max-time S] [--report-dir D]

CI runs a fixed seed (tests/serving/test_fuzz.py); `make fuzz` a longer run. schemathesis is a
development dependency: it runs as its own process, this module never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from serving import accounts, create_app, db, keys
from serving.protocol import INT32_MAX
from serving.testing import server

EMAIL = "fuzz@example.com"
CREDITS_MICROS = 10**15
SEED = 20261129
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))  # the CLI beside this Python


@dataclass
class Result:
    """What one run found, read from schemathesis' JSON report and the gateway's log."""

    cases: int
    wall_s: float
    exit_code: int
    failures: list[dict[str, Any]]
    errors: list[Any]
    warnings: dict[str, Any]
    tracebacks: int
    own_key_ok: bool
    output: str = field(repr=False)

    @property
    def clean(self) -> bool:
        return (
            self.exit_code == 0
            and not self.failures
            and not self.errors
            and not self.tracebacks
            and self.own_key_ok
        )

    def summary(self) -> str:
        lines = [
            f"cases run        {self.cases}",
            f"wall time        {self.wall_s:.1f} s",
            f"failures         {len(self.failures)}",
            f"errors           {len(self.errors)}",
            f"server tracebacks {self.tracebacks}",
            f"own key intact   {self.own_key_ok}",
        ]
        lines += [
            f"  {f['code']} {f['title']}: {', '.join(f['operations'])}" for f in self.failures
        ]
        return "\n".join(lines)


def _fuzz_key(home: Path, db_url: str) -> tuple[str, str]:
    """The fuzzer's API key (id, raw): every model, the highest limits a key can have."""
    app = create_app(
        {
            "DATABASE_URL": db_url,
            "HOME": str(home),
            "ENGINES_FACTORY": "serving.testing.fakes:make_engines",
            "DASHBOARD": False,
            "SECRET_KEY": server.SECRET_KEY,
        }
    )
    engine = db.get_engine(app)
    with app.app_context(), db.write(engine) as conn:
        account = accounts.require(conn, EMAIL)
        row, raw = keys.create(
            conn,
            app.extensions["auth"].secret,
            account["id"],
            "fuzzer",
            [],
            rpm_limit=INT32_MAX,
            tpm_limit=INT32_MAX,
        )
    engine.dispose()
    return str(row["id"]), raw


def run(
    work: Path,
    *,
    max_examples: int = 100,
    seed: int | None = SEED,
    max_time_s: int | None = None,
    timeout_s: float = 1800,
    extra: tuple[str, ...] = (),
) -> Result:
    """Start a gateway under `work`, fuzz it, stop it; the report lands in `work/report`."""
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    db_url = server.prepare(home, {EMAIL: CREDITS_MICROS})
    key_id, raw = _fuzz_key(home, db_url)
    # room for the keys stateful runs create (the cap itself is tested in test_api.py)
    gw = server.start(home, db_url, workers=2, threads=16,
                      extra_env={"INFERBASE_KEYS_MAX_PER_ACCOUNT": "100000"})  # fmt: skip
    report = work / "report.json"
    argv = [
        SCHEMATHESIS,
        "run", f"{gw.url}/openapi.json",
        "--header", f"Authorization: Bearer {raw}",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(max_examples),
        "--workers", "1",
        "--request-timeout", "30",
        "--report", "json", "--report-json-path", str(report),
        "--no-color",
    ]  # fmt: skip
    if seed is not None:
        argv += ["--seed", str(seed)]
    if max_time_s is not None:
        argv += ["--max-time", str(max_time_s)]
    argv += extra
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "serving.testing.fuzz_hooks",
        "INFERBASE_FUZZ_OWN_KEY_ID": key_id,
        "PYTHONPATH": str(server.REPO),
    }
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, env=env, cwd=work, capture_output=True, text=True, timeout=timeout_s
        )
        wall = time.perf_counter() - t0
        own = httpx.get(
            f"{gw.url}/api/v1/inference/credits", headers={"Authorization": f"Bearer {raw}"}
        )
    finally:
        gw.stop()
    data = json.loads(report.read_text())
    log = gw.log.read_text(errors="replace")
    return Result(
        cases=int(data["test_cases"]["generated"]),
        wall_s=wall,
        exit_code=proc.returncode,
        failures=list(data["failures"]),
        errors=list(data["errors"]),
        warnings={k: v for k, v in data["warnings"].items() if v},
        tracebacks=log.count("Traceback"),
        own_key_ok=own.status_code == 200,
        output=proc.stdout + proc.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-examples", type=int, default=100, help="cases per operation and phase")
    p.add_argument("--seed", type=int, default=SEED, help="0: a random seed")
    p.add_argument("--max-time", type=int, default=None, help="seconds: fuzz until spent")
    p.add_argument("--report-dir", type=Path, default=None, help="keep the run's files here")
    a, extra = p.parse_known_args(argv)  # anything else goes to `schemathesis run` as it is
    work = a.report_dir or Path(tempfile.mkdtemp(prefix="inferbase-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    res = run(
        work,
        max_examples=a.max_examples,
        seed=a.seed or None,
        max_time_s=a.max_time,
        extra=tuple(extra),
    )
    print(res.output)
    print(res.summary())
    print(f"files: {work}")
    return 0 if res.clean else 1


if __name__ == "__main__":
    sys.exit(main())
