"""Integers too big for the database are refused at the edge with a clear 400 (CLI: a usage error),
on SQLite and PostgreSQL alike, never a 500."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from serving import db, ledger
from serving.cli import cli
from serving.testing.fakes import FakeEngines, FakeRouter
from tests.serving.conftest import build_app

BASE = "/api/v1/inference"
HUGE = "99999999999999999999"


def _bad(rv, param: str) -> None:  # type: ignore[no-untyped-def]
    assert rv.status_code == 400, rv.get_data(as_text=True)
    err = rv.get_json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err


@pytest.mark.parametrize("path", ["/credits/transactions", "/usage"])
def test_page_cursor_out_of_range_is_400(store_api, path):
    t = store_api.tenant()
    c = store_api.client
    for cursor in (HUGE, str(2**63), "-1"):
        _bad(c.get(f"{BASE}{path}?cursor={cursor}", headers=t.headers), "cursor")
    rv = c.get(f"{BASE}{path}?cursor={2**63 - 1}", headers=t.headers)  # the largest id is fine
    assert rv.status_code == 200 and rv.get_json()["object"] == "list"


@pytest.mark.parametrize("field", ["rpm_limit", "tpm_limit"])
def test_key_limits_out_of_range_are_400(store_api, field):
    t = store_api.tenant(rpm_limit=2**31 - 1, tpm_limit=2**31 - 1)  # a parent that allows the max
    c = store_api.client
    for value in (int(HUGE), 2**63, 2**31, 0):
        _bad(c.post(f"{BASE}/keys", json={"name": "x", field: value}, headers=t.headers), field)
    rv = c.post(f"{BASE}/keys", json={"name": "x", field: 2**31 - 1}, headers=t.headers)
    assert rv.status_code == 201 and rv.get_json()[field] == 2**31 - 1


def test_cli_refuses_amounts_and_limits_the_database_cannot_hold(db_url, tmp_path):
    env = {
        "INFERBASE_HOME": str(tmp_path),
        "INFERBASE_DATABASE_URL": db_url,
        "INFERBASE_ENGINES_FACTORY": "serving.testing.fakes:make_engines",
        "INFERBASE_SECRET_KEY": "cli-secret-" + "k" * 32,
    }

    def run(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    assert run("db", "upgrade").exit_code == 0
    assert run("accounts", "create", "ops@example.com").exit_code == 0
    for amount in ("1e30", "inf", "-inf", "nan", "9223372036854.775808"):
        r = run("credits", "grant", "--", "ops@example.com", amount)
        assert r.exit_code == 2, r.output  # a usage error, not a traceback
        assert "Error: Invalid value" in r.output and "Traceback" not in r.output
    r = run("accounts", "create", "big@example.com", "--credits", "1e30")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert run("credits", "grant", "ops@example.com", "9223372036854.775807").exit_code == 0
    r = run("credits", "grant", "ops@example.com", "1")  # the balance itself would overflow
    assert r.exit_code == 2 and "past what an account can hold" in r.output
    for flag in ("--rpm", "--tpm"):
        r = run("keys", "create", "--account", "ops@example.com", "--name", "k", flag, HUGE)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    app = build_app(db_url, tmp_path, FakeEngines(), FakeRouter())
    with app.app_context(), db.read() as conn:
        from serving import accounts

        acct = accounts.require(conn, "ops@example.com")
        assert ledger.balance(conn, acct["id"])["balance_micros"] == 2**63 - 1
    app.extensions["db"].dispose()


def test_cli_serve_options_out_of_range_are_usage_errors(tmp_path):
    env = {"INFERBASE_HOME": str(tmp_path), "INFERBASE_SECRET_KEY": "cli-secret-" + "k" * 32}
    for args in (
        ["serve", "--port", HUGE],
        ["serve", "--port", "0"],
        ["serve", "--workers", "0"],
        ["serve", "--threads", HUGE],
        ["up", "--port", "70000"],
        ["up", "--demo-credits", HUGE],
    ):
        r = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
        assert r.exit_code == 2 and "Invalid value" in r.output, (args, r.output)
