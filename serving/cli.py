"""The `inferbase` operator command: db, accounts, credits, keys, serve (+ engines if present)."""

from __future__ import annotations

import os
import sys
from decimal import InvalidOperation

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from serving import create_app
from serving.protocol import INT32_MAX, INT64_MAX
from serving.router_client import OPTIMIZE_MODES


def _config_app() -> Flask:
    """Configuration and database only: for commands that must not start engines or routers."""
    from serving import config, db

    app = Flask("serving")
    config.load_config(app, None)
    db.init_app(app)
    return app


@click.group(cls=FlaskGroup, create_app=create_app, add_default_commands=False, load_dotenv=False)
def cli() -> None:
    """Operate an Inferbase gateway. INFERBASE_* environment variables override configuration."""


@cli.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations."""
    from serving import db

    app = _config_app()
    db.upgrade(app.extensions["db"], revision)
    click.echo(f"database at {revision}")


def _micros(amount: str) -> int:
    """AMOUNT credits in micro-credits: a usage error (exit 2) unless it is a finite decimal that
    fits the database's 64-bit balance."""
    from serving.ledger import credits_to_micros

    try:
        micros = credits_to_micros(amount, int(current_app.config["MICROS_PER_CREDIT"]))
    except (InvalidOperation, ValueError, OverflowError) as e:  # OverflowError: "inf"
        raise click.BadParameter(f"not an amount of credits: {amount}") from e
    if abs(micros) > INT64_MAX:
        raise click.BadParameter(f"{amount} credits is more than an account can hold")
    return micros


LIMIT = click.IntRange(1, INT32_MAX)
PORT = click.IntRange(1, 65535)
COUNT = click.IntRange(1, 4096)  # workers, threads


@cli.group("accounts")
def accounts_group() -> None:
    """Accounts."""


@accounts_group.command("create")
@click.argument("email")
@click.option("--password", default=None, help="Allows dashboard login (prompted if '-').")
@click.option("--credits", "credits_", default="0", help="Initial credits (decimal).")
@with_appcontext
def accounts_create(email: str, password: str | None, credits_: str) -> None:
    from serving import accounts, db
    from serving.errors import ApiError

    if password == "-":
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    micros = _micros(credits_)
    try:
        with db.write() as conn:
            account_id = accounts.create_account(conn, email, password, micros)
    except ApiError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"account {account_id} {accounts.normalize_email(email)} credits={credits_}")


@accounts_group.command("set-password")
@click.argument("email")
@click.option("--password", default="-", show_default=True, help="The new password ('-': prompt).")
@with_appcontext
def accounts_set_password(email: str, password: str) -> None:
    """Set EMAIL's dashboard password; every browser session of the account ends."""
    from serving import accounts, db
    from serving.errors import ApiError

    if password == "-":
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        with db.write() as conn:
            account = accounts.require(conn, email)
            ended = accounts.set_password(conn, account["id"], password)
    except ApiError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"password set for {account['email']}; {ended} session(s) ended")


@accounts_group.command("deactivate")
@click.argument("email")
@with_appcontext
def accounts_deactivate(email: str) -> None:
    from serving import accounts, db
    from serving.errors import ApiError

    try:
        with db.write() as conn:
            account_id = accounts.deactivate(conn, email)
    except ApiError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"account {account_id} deactivated")


@cli.group("credits")
def credits_group() -> None:
    """Credits."""


@credits_group.command("grant")
@click.argument("email")
@click.argument("amount")
@with_appcontext
def credits_grant(email: str, amount: str) -> None:
    """Deposit AMOUNT credits (decimal, e.g. 12.5) into the account of EMAIL."""
    from serving import accounts, db, ledger
    from serving.errors import ApiError

    micros = _micros(amount)
    try:
        with db.write() as conn:
            account = accounts.require(conn, email)
            if ledger.balance(conn, account["id"])["balance_micros"] > INT64_MAX - micros:
                raise click.BadParameter(
                    f"{amount} credits would take the balance past what an account can hold",
                    param_hint="AMOUNT",
                )
            ledger.deposit(conn, account["id"], micros, "granted by operator")
            bal = ledger.balance(conn, account["id"])
    except ApiError as e:
        raise click.ClickException(e.message) from e
    click.echo(
        f"granted {amount} credits to {account['email']}: balance_micros={bal['balance_micros']}"
    )


@cli.group("keys")
def keys_group() -> None:
    """API keys."""


@keys_group.command("create")
@click.option("--account", "email", required=True)
@click.option("--name", required=True)
@click.option("--pool", default="", help="Comma-separated model ids for smart routing.")
@click.option("--optimize", default="balanced", type=click.Choice(OPTIMIZE_MODES))
@click.option("--rpm", type=LIMIT, default=None, help="requests per minute")
@click.option("--tpm", type=LIMIT, default=None, help="tokens per minute")
@with_appcontext
def keys_create(
    email: str, name: str, pool: str, optimize: str, rpm: int | None, tpm: int | None
) -> None:
    """Create an API key; the raw key is printed as the last line (shown only once)."""
    from serving import accounts, db, keys
    from serving.errors import ApiError

    app = current_app
    known = {m.id for m in app.extensions["engines"].models()}
    try:
        models = keys.validate_pool([p.strip() for p in pool.split(",") if p.strip()], known)
        with db.write() as conn:
            account = accounts.require(conn, email)
            keys.check_room(conn, account["id"], int(app.config["KEYS_MAX_PER_ACCOUNT"]))
            row, raw = keys.create(
                conn, app.extensions["auth"].secret, account["id"], name, models, optimize, rpm, tpm
            )
    except ApiError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"key {row['id']} ({row['prefix']}...) for {account['email']}")
    click.echo(raw)


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=PORT)
@click.option(
    "--workers",
    default=(os.cpu_count() or 1) + 1,
    show_default="CPU cores + 1",
    type=COUNT,
    help="worker processes (each loads the router); one more than the cores keeps them busy "
    "while one waits on the database lock",
)
@click.option(
    "--threads",
    default=512,
    show_default=True,
    type=COUNT,
    help="gthread threads per worker: each open stream holds one",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="gunicorn's access log line per request (the app already logs every chat request with "
    "its request id, key, model, tokens and latency, and every error)",
)
def serve(host: str, port: int, workers: int, threads: int, access_log: bool) -> None:
    """Migrate the database, then serve the API with gunicorn (threaded workers)."""
    from serving import db

    db.upgrade(_config_app().extensions["db"])
    _port_is_free(host, port)
    argv = gunicorn_argv(f"{host}:{port}", workers, threads, access_log=access_log)
    os.execv(argv[0], argv)


def _port_is_free(host: str, port: int) -> None:
    """With SO_REUSEPORT a second server on a taken port would share it silently (the kernel splits
    the connections between them): bind once without it to fail clearly instead."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror}") from e


def gunicorn_argv(
    bind: str, workers: int, threads: int, app: str = "serving.wsgi:app", access_log: bool = False
) -> list[str]:
    """The gunicorn command line the gateway is served with (the tests start the same one).

    `serving.gworker.Worker` is gthread that answers pipelined requests and closes idle kept-alive
    connections at once on a graceful stop. On Linux every worker listens on its own socket
    (SO_REUSEPORT), so the kernel spreads connections over the workers: with one shared socket the
    first worker to wake took most of a client's kept-alive connections, and one worker did the
    work while the other idled. `serving.gworker.Logger` makes the master's "Listening at:" line
    name the address (with SO_REUSEPORT the master holds no socket, and gunicorn printed none)."""
    # the gunicorn of this interpreter's environment, whether or not the venv is on PATH
    argv = [
        sys.executable, "-m", "gunicorn", "--worker-class", "serving.gworker.Worker",
        "--logger-class", "serving.gworker.Logger", "--config", "python:serving.gconf",
        "--workers", str(workers), "--threads", str(threads), "--bind", bind,
        "--timeout", "120", "--graceful-timeout", "30",
    ]  # fmt: skip
    if sys.platform.startswith("linux"):
        argv.append("--reuse-port")
    if access_log:
        argv += ["--access-logfile", "-"]
    return [*argv, app]


from serving.engines.cli import engines_cli  # noqa: E402

cli.add_command(engines_cli, "engines")


from serving.quickstart import up as _up  # noqa: E402

cli.add_command(_up, "up")


def main() -> None:
    cli.main(args=sys.argv[1:], prog_name="inferbase")


if __name__ == "__main__":
    main()
