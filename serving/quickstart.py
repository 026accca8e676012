"""`inferbase up`: the main job on embedded defaults, in one command.

Migrates the database, starts the catalog's local engines (and waits for them), makes sure a demo
account with credits exists, issues it a fresh quick-start API key (revoking the previous one, so
only the key printed last works), prints how to call the API with the OpenAI SDK, then serves.
Stopping the server (Ctrl-C, SIGTERM) stops the engines this command started, not those that ran
before it (gunicorn's `on_exit` hook, `serving.gconf`; before the server runs, this command).

The raw key and the demo password go to the terminal only (`reveal`): when standard output is
redirected to a log file they are written to the controlling terminal, or, with none (a service),
to a file only the owner can read, whose path is printed instead.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import with_appcontext

DEMO_EMAIL = "demo@inferbase.local"
DEMO_KEY_NAME = "quickstart"


def issue_demo_key(app: Flask, email: str, credits_micros: int) -> tuple[str, str | None]:
    """A fresh quick-start key for the demo account, and its dashboard password when the account
    was created just now (it is shown once, like the key)."""
    from serving import accounts, db, keys

    models = [m.id for m in app.extensions["engines"].models()]
    password = None
    with db.write() as conn:
        account = accounts.find(conn, email)
        if account is None:
            password = secrets.token_urlsafe(12)
            accounts.create_account(conn, email, password, credits_micros)
            account = accounts.require(conn, email)
        for row in keys.list_for(conn, account["id"]):
            if row["name"] == DEMO_KEY_NAME and not row.get("revoked"):
                keys.revoke(conn, account["id"], row["id"])
        _row, raw = keys.create(
            conn,
            app.extensions["auth"].secret,
            account["id"],
            DEMO_KEY_NAME,
            models,
            "balanced",
            None,
            None,
        )
    return raw, password


def reveal(secret_text: str, home: Path, tty: str = "/dev/tty") -> str:
    """Show `secret_text` on the terminal only; returns where it went ("stdout", the tty path or
    the file written under `home`)."""
    if sys.stdout.isatty():
        click.echo(secret_text)
        return "stdout"
    try:
        with open(tty, "w") as term:
            term.write(secret_text + "\n")
        click.echo("(the demo key and password were printed on the terminal only)")
        return tty
    except OSError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    path = home / "quickstart.txt"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret_text + "\n")
    click.echo(f"(no terminal: the demo key and password are in {path}, readable by you only)")
    return str(path)


@click.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 4096))
@click.option("--threads", default=512, show_default=True, type=click.IntRange(1, 4096))
@click.option("--engines/--no-engines", default=True, help="Start the catalog's local engines.")
@click.option(
    "--demo-credits", default=100, show_default=True, type=click.IntRange(0, 1_000_000_000)
)
@click.pass_context
@with_appcontext
def up(
    ctx: click.Context,
    host: str,
    port: int,
    workers: int,
    threads: int,
    engines: bool,
    demo_credits: int,
) -> None:
    """Migrate, start local engines, issue a demo key, and serve (the README's main command)."""
    from flask import current_app

    from serving import db

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    db.upgrade(app.extensions["db"])
    group: Any = ctx.find_root().command  # the `inferbase` group
    if not (engines and "engines" in getattr(group, "commands", {})):
        _serve(ctx, group, app, host, port, workers, threads, demo_credits)
        return
    from serving.engines import local

    rd = local.run_dir()
    before = local.running(rd)
    # gunicorn's on_exit hook (serving.gconf) stops the engines started here when the server
    # stops; until `serve` replaces this process, a failure or Ctrl-C stops them here
    try:
        ctx.invoke(group.commands["engines"].commands["up"])
        mine = sorted(local.running(rd) - before)
        os.environ[local.STOP_ON_EXIT_ENV] = os.pathsep.join(
            str(local.record_file(rd, name)) for name in mine
        )
        if mine:
            click.echo(f"local engines started now, stopped with the server: {', '.join(mine)}")
        if before:
            click.echo(
                "local engines already running before `up`, left running when it stops "
                f"(`inferbase engines down` stops them): {', '.join(sorted(before))}"
            )
        _serve(ctx, group, app, host, port, workers, threads, demo_credits)
    except BaseException:
        for name in sorted(local.running(rd) - before):
            local.stop_record(local.record_file(rd, name))
            click.echo(f"stopped {name}", err=True)
        raise


def _serve(
    ctx: click.Context,
    group: Any,
    app: Flask,
    host: str,
    port: int,
    workers: int,
    threads: int,
    demo_credits: int,
) -> None:
    """Issue the demo key, say how to call the API, then become the server (`serve` execs)."""
    raw, password = issue_demo_key(
        app, DEMO_EMAIL, demo_credits * int(app.config["MICROS_PER_CREDIT"])
    )
    base = f"http://{host}:{port}/api/v1/inference"
    login = (
        f"dashboard http://{host}:{port}/dashboard/ : {DEMO_EMAIL} / {password} (shown once)\n"
        if password
        else ""
    )
    click.echo(f"\nInferbase is starting on {base} (dashboard http://{host}:{port}/dashboard/)")
    reveal(
        f"{login}demo account {DEMO_EMAIL}; its quick-start API key (shown once):\n\n    {raw}\n",
        Path(app.config["HOME"]),
    )
    click.echo(
        "Try it:\n"
        f'    OpenAI(api_key="{raw[:10]}...", base_url="{base}")'
        '.chat.completions.create(model="auto", messages=[...])\n'
    )
    ctx.invoke(group.commands["serve"], host=host, port=port, workers=workers, threads=threads)
