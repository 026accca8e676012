"""The `inferbase` command: in-process through Click, and the installed console entry point."""

from __future__ import annotations

import os
import sys

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from serving import db, ledger
from serving.cli import cli, gunicorn_env
from serving.schema import accounts
from tests.serving.conftest import free_port


def run(env, *args):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result


def create_key(env, name, pool, *args):
    return run(
        env, "keys", "create", "--account", "ops@example.com", "--name", name, "--pool", pool, *args
    )


def test_operator_workflow(tmp_path, monkeypatch):
    env = {
        "INFERBASE_HOME": str(tmp_path),
        "INFERBASE_ENGINES_FACTORY": "serving.testing.fakes:make_engines",
        "INFERBASE_SECRET_KEY": "cli-secret-" + "k" * 32,
    }
    r = run(env, "db", "upgrade")
    assert r.exit_code == 0 and "head" in r.output
    r = run(env, "accounts", "create", "Ops@Example.com", "--password", "pw", "--credits", "2.5")
    assert r.exit_code == 0, r.output
    r = run(env, "accounts", "create", "ops@example.com")
    assert r.exit_code != 0 and "already exists" in r.output
    r = run(env, "credits", "grant", "ops@example.com", "0.000001")
    assert r.exit_code == 0 and "balance_micros=2500001" in r.output
    r = run(env, "credits", "grant", "ops@example.com", "lots")
    assert r.exit_code != 0
    r = run(env, "credits", "grant", "nobody@example.com", "1")
    assert r.exit_code != 0 and "No account" in r.output
    r = create_key(env, "prod", "local/tiny-a,Qwen/Qwen3-14B", "--optimize", "cost")
    assert r.exit_code == 0, r.output
    raw = r.output.strip().splitlines()[-1]
    assert raw.startswith("inf_") and len(raw) >= 47
    r = create_key(env, "x", "not/a-model")
    assert r.exit_code != 0 and "Unknown model" in r.output

    from serving import create_app

    with monkeypatch.context() as m:  # (restores the session's INFERBASE_HOME afterwards)
        for k, v in env.items():
            m.setenv(k, v)
        app = create_app({"TESTING": True})
    client = app.test_client()
    rv = client.get("/api/v1/inference/keys", headers={"Authorization": f"Bearer {raw}"})
    assert rv.status_code == 200
    assert rv.get_json()["data"][0]["model_pool"] == ["local/tiny-a", "Qwen/Qwen3-14B"]
    r = run(env, "accounts", "deactivate", "ops@example.com")
    assert r.exit_code == 0
    rv = client.get("/api/v1/inference/credits", headers={"Authorization": f"Bearer {raw}"})
    assert rv.status_code == 403
    with app.app_context(), db.read() as conn:
        acct = conn.execute(sa.select(accounts)).one()
        assert ledger.balance(conn, acct.id)["balance_micros"] == 2_500_001
    app.extensions["db"].dispose()


def test_console_script_help(capsys, monkeypatch):
    from serving.cli import main

    monkeypatch.setattr(sys, "argv", ["inferbase", "--help"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("db", "accounts", "credits", "keys", "serve"):
        assert command in out


def test_serve_runs_gunicorn_without_glibc_thread_caches(tmp_path, monkeypatch):
    """`serve` execs gunicorn with glibc's per-thread malloc cache off (serving.cli.gunicorn_env:
    the gateway's memory under 200 streams grew until every thread's cache was full), adding to
    the operator's other tunables and leaving an operator's own tcache size alone."""

    class Exec(Exception):  # stands in for the exec that replaces the process
        pass

    execs = []

    def execve(path, argv, env):
        execs.append((argv, env))
        raise Exec

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(os, "execv", lambda path, argv: execve(path, argv, dict(os.environ)))
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    env = {"INFERBASE_HOME": str(tmp_path), "INFERBASE_SECRET_KEY": "cli-secret-" + "k" * 32}
    with pytest.raises(Exec):
        run(env, "serve", "--port", str(free_port()))
    ((argv, served),) = execs
    assert "gunicorn" in argv and served["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=0"
    assert served["INFERBASE_HOME"] == str(tmp_path)

    other = gunicorn_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert other["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"
    own = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=3"}
    assert gunicorn_env(own) == own
