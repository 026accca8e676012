"""Per-request bookkeeping cost of the gateway, on SQLite and PostgreSQL.

Measures, in this process, each step a billed chat request pays for (key lookup from the database
and from the per-worker cache, rate-limit hit, reservation, settlement with its usage row) and a
whole request through the Flask app (test client, fake engine: no HTTP, no model), then prints a
table in microseconds per operation and operations per second.

    python benchmarks/bookkeeping.py [--n 2000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving import accounts, auth, create_app, db, keys, ledger, ratelimit  # noqa: E402
from serving.testing.fakes import FakeEngines  # noqa: E402

PG_DEFAULT = os.environ.get(
    "INFERBASE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/core_test"
)


def timed(n: int, fn: Callable[[int], object]) -> tuple[float, float]:
    """(wall µs per op, CPU µs per op)."""
    fn(-1)  # warm up
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall / n * 1e6, cpu / n * 1e6


def bench(url: str, n: int, home: Path) -> list[tuple[str, float, float]]:
    app = create_app(
        {
            "HOME": str(home),
            "DATABASE_URL": url,
            "SECRET_KEY": "bench-" + "z" * 40,
            "ENGINES": FakeEngines(),
            "ROUTER": None,
            "AUTO_MIGRATE": True,
            "REDIS_URL": None,
            "DEFAULT_RPM": 10**9,
            "DEFAULT_TPM": 10**12,
        }
    )
    rows: list[tuple[str, float, float]] = []
    with app.app_context():
        with db.write() as conn:
            acct = accounts.create_account(conn, f"bench{secrets.token_hex(4)}@x.io", None, 10**15)
            _, raw = keys.create(conn, app.extensions["auth"].secret, acct, "bench", [])
        state: auth.AuthState = app.extensions["auth"]
        key_hash = keys.hash_key(state.secret, raw)

        def lookup_db(_: int) -> object:
            with db.read() as conn:
                return keys.lookup(conn, key_hash)

        info = lookup_db(0)
        assert info is not None
        state.cache.put(key_hash, info)
        rows.append(("key lookup (database)", *timed(n, lookup_db)))
        rows.append(
            ("key lookup (hash + cache)",
             *timed(n, lambda _: state.cache.get(keys.hash_key(state.secret, raw))))
        )  # fmt: skip
        rl = ratelimit.get()
        rows.append(
            ("rate limit check (RPM hit + TPM test)", *timed(n, lambda _: rl.check_request(info)))
        )
        rows.append(("rate limit tokens (TPM hit)", *timed(n, lambda _: rl.add_tokens(info, 20))))
        rids = [f"bench-{secrets.token_hex(8)}-{i}" for i in range(n + 1)]
        rows.append(
            ("reserve (SQLite: 1 txn, 3 stmts; PG: 1 stmt)",
             *timed(n, lambda i: ledger.reserve(acct, info.id, rids[i], 500, 3600)))
        )  # fmt: skip

        def settle(i: int) -> object:
            usage = {"id": rids[i], "account_id": acct, "key_id": info.id, "requested_model": "m",
                     "served_model": "m", "prompt_tokens": 12, "completion_tokens": 8,
                     "total_tokens": 20, "status": "success", "stream": False}  # fmt: skip
            return ledger.settle(rids[i], acct, 500, 7, usage)

        rows.append(("settle + usage row (SQLite: 1 txn, 5; PG: 1)", *timed(n, settle)))

    client = app.test_client()
    headers = {"Authorization": f"Bearer {raw}"}
    body = {"model": "local/tiny-a", "messages": [{"role": "user", "content": "hello there"}]}

    def request(_: int) -> object:
        rv = client.post("/api/v1/inference/chat/completions", json=body, headers=headers)
        assert rv.status_code == 200, rv.get_data()
        return rv

    rows.append(
        ("whole chat request (Flask test client, fake engine)", *timed(max(n // 2, 1), request))
    )
    app.extensions["db"].dispose()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--postgres", default=PG_DEFAULT)
    args = ap.parse_args()
    results: dict[str, list[tuple[str, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = bench(f"sqlite:///{tmp}/bench.db", args.n, Path(tmp))
    try:
        eng = sa.create_engine(args.postgres)
        with eng.connect():
            pass
        eng.dispose()
        schema = "bench_" + secrets.token_hex(4)
        admin = sa.create_engine(args.postgres)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in args.postgres else "?"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"{args.postgres}{sep}options=-csearch_path%3D{schema}"
                results["PostgreSQL"] = bench(url, args.n, Path(tmp))
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            admin.dispose()
    except sa.exc.OperationalError as e:
        sys.stderr.write(f"PostgreSQL skipped: {e}\n")
    width = max(len(r[0]) for rows in results.values() for r in rows)
    header = f"{'operation':<{width}}"
    for name in results:
        header += f" | {name + ' µs':>14} {'cpu µs':>8} {'ops/s':>8}"
    lines = [header, "-" * len(header)]
    for i, (op, *_rest) in enumerate(next(iter(results.values()))):
        line = f"{op:<{width}}"
        for rows in results.values():
            wall, cpu = rows[i][1], rows[i][2]
            line += f" | {wall:>14.1f} {cpu:>8.1f} {1e6 / wall:>8.0f}"
        lines.append(line)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
