"""The `inferbase` operator command: db, accounts, credits, keys, serve (+ engines if present)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
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


def _cli_app() -> Flask:
    """The app the commands run in: without Prometheus metrics, since this process serves no
    requests and must not write into a serving gunicorn's multiprocess directory (which `serve`
    has not even created yet when it loads this)."""
    return create_app({"METRICS": False})


@click.group(cls=FlaskGroup, create_app=_cli_app, add_default_commands=False, load_dotenv=False)
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
RATE = click.FloatRange(0.0, 1.0)
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
@click.option(
    "--capture",
    type=RATE,
    default=0.0,
    show_default=True,
    help="share of requests captured for learning (docs/traffic.md); 0: off",
)
@click.option(
    "--compare",
    type=RATE,
    default=None,
    help="share of captured auto requests compared (default: COMPARE_RATE)",
)
@with_appcontext
def keys_create(
    email: str,
    name: str,
    pool: str,
    optimize: str,
    rpm: int | None,
    tpm: int | None,
    capture: float,
    compare: float | None,
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
                conn,
                app.extensions["auth"].secret,
                account["id"],
                name,
                models,
                optimize,
                rpm,
                tpm,
                capture_rate=capture,
                compare_rate=compare,
            )
    except ApiError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"key {row['id']} ({row['prefix']}...) for {account['email']}")
    click.echo(raw)


@keys_group.command("capture")
@click.argument("key_id")
@click.argument("rate", type=RATE)
@click.option("--compare", type=RATE, default=None, help="share of captured auto requests compared")
@with_appcontext
def keys_capture(key_id: str, rate: float, compare: float | None) -> None:
    """Set the share RATE (0-1; 0: off) of KEY_ID's requests captured for learning."""
    import sqlalchemy as sa

    from serving import db, keys
    from serving.errors import ApiError
    from serving.schema import api_keys

    try:
        with db.write() as conn:
            account_id = conn.execute(
                sa.select(api_keys.c.account_id).where(api_keys.c.id == key_id)
            ).scalar()
            if account_id is None:
                raise click.ClickException(f"no key {key_id}")
            row = keys.update(conn, account_id, key_id, capture_rate=rate, compare_rate=compare)
    except ApiError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"key {key_id}: capture_rate={row['capture_rate']}")


@cli.group("traffic")
def traffic_group() -> None:
    """Captured traffic (docs/traffic.md)."""


@traffic_group.command("sweep")
@with_appcontext
def traffic_sweep() -> None:
    """Delete captured traffic, pairs and feedback older than TRAFFIC_RETENTION_DAYS."""
    from serving import db, traffic

    days = float(current_app.config["TRAFFIC_RETENTION_DAYS"])
    click.echo(f"deleted {traffic.sweep(db.get_engine(), days)} rows older than {days} days")


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
    "--reuse-port/--shared-socket",
    default=False,
    show_default=True,
    help="--shared-socket: the master's one listening socket, which the workers share; a worker "
    "that dies loses only its own connections, and the queued ones go to the others. "
    "--reuse-port (Linux): a socket per worker (SO_REUSEPORT); a dead worker's queued connections "
    "are reset with it, unless the kernel's net.ipv4.tcp_migrate_req is 1",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="gunicorn's access log line per request (the app already logs every chat request with "
    "its request id, key, model, tokens and latency, and every error)",
)
def serve(
    host: str, port: int, workers: int, threads: int, reuse_port: bool, access_log: bool
) -> None:
    """Migrate the database, then serve the API with gunicorn (threaded workers)."""
    from serving import db

    db.upgrade(_config_app().extensions["db"])
    _port_is_free(host, port)
    argv = gunicorn_argv(
        f"{host}:{port}", workers, threads, access_log=access_log, reuse_port=reuse_port
    )
    os.execve(argv[0], argv, gunicorn_env(os.environ))


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
    bind: str,
    workers: int,
    threads: int,
    app: str = "serving.wsgi:app",
    access_log: bool = False,
    reuse_port: bool = False,
) -> list[str]:
    """The gunicorn command line the gateway is served with (the tests start the same one).

    `serving.gworker.Worker` is gthread that answers pipelined requests and closes idle kept-alive
    connections at once on a graceful stop. The workers share the master's listening socket: a
    connection waits in its one accept queue until some worker takes it, so when a worker dies
    (SIGKILL, out of memory) the connections it had not accepted yet are served by the others.
    With `reuse_port` (Linux) every worker listens on its own socket (SO_REUSEPORT) and the kernel
    spreads connections over the workers, but the queue of a worker that dies is reset with it
    (21 client errors in issue #14's measurement; 6-10 of 16 connections waiting on a hung worker
    that was then killed, against none with the shared socket). CPU per request, interleaved
    (`python benchmarks/gateway.py --libraries --parts listen`): shared 0.84 / 0.93 / 1.16 ms,
    SO_REUSEPORT 0.95 / 0.94 / 1.20 ms (json 1 client, json 16, stream 16), the same within the
    noise. `serving.gworker.Logger` makes the
    master's "Listening at:" line name the address (with SO_REUSEPORT the master holds no socket,
    and gunicorn printed none)."""
    # the gunicorn of this interpreter's environment, whether or not the venv is on PATH
    argv = [
        sys.executable, "-m", "gunicorn", "--worker-class", "serving.gworker.Worker",
        "--logger-class", "serving.gworker.Logger", "--config", "python:serving.gconf",
        "--workers", str(workers), "--threads", str(threads), "--bind", bind,
        "--timeout", "120", "--graceful-timeout", "30",
    ]  # fmt: skip
    if reuse_port and sys.platform.startswith("linux"):
        argv.append("--reuse-port")
    if access_log:
        argv += ["--access-logfile", "-"]
    return [*argv, app]


MALLOC_TUNABLE = "glibc.malloc.tcache_count"


def gunicorn_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the gateway's gunicorn runs with: `environ`, with glibc's per-thread malloc
    cache (tcache) turned off unless the operator's GLIBC_TUNABLES already sets its size.

    Each gunicorn thread (one per open stream, ~230 under 200 streams) fills a cache of its own
    with up to 7 freed chunks of each size up to 1 KiB, which malloc counts as in use: under
    `benchmarks/soak.py` the workers' heap in use grew 6-8 MiB each in 100 s and the gateway's RSS
    8-12% over minutes until every thread's cache was full; with the cache off the heap in use
    stays flat (+1.3% RSS in 120 s), at the same gateway CPU per request (1.83 against 1.89 ms).
    glibc reads the tunables when a process starts, so they are set before gunicorn is."""
    env = dict(environ)
    tunables = env.get("GLIBC_TUNABLES", "")
    if MALLOC_TUNABLE not in tunables:
        env["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, f"{MALLOC_TUNABLE}=0") if t)
    return env


from serving.engines.cli import engines_cli  # noqa: E402

cli.add_command(engines_cli, "engines")


from serving.quickstart import up as _up  # noqa: E402

cli.add_command(_up, "up")


def main() -> None:
    cli.main(args=sys.argv[1:], prog_name="inferbase")


if __name__ == "__main__":
    main()
