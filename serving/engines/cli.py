"""`inferbase engines ...`: build the tiny models, start/stop/list the local vLLM engines."""

from __future__ import annotations

import os
from pathlib import Path

import click

from serving.engines import local
from serving.engines.catalog import CatalogError, load_catalog

DEFAULT_CATALOG = local.REPO_ROOT / "data" / "catalog.local.yaml"


def _catalog_path(catalog: str | None) -> Path:
    return Path(catalog or os.environ.get("INFERBASE_CATALOG") or DEFAULT_CATALOG)


def _load(catalog: str | None):  # -> list[CatalogModel]
    try:
        return load_catalog(_catalog_path(catalog))
    except CatalogError as e:
        raise click.ClickException(str(e)) from None


catalog_option = click.option(
    "--catalog",
    type=click.Path(dir_okay=False),
    default=None,
    help="Catalog YAML (default: $INFERBASE_CATALOG or data/catalog.local.yaml).",
)


@click.group("engines")
def engines_cli() -> None:
    """Local vLLM engines (run directory: $INFERBASE_HOME/engines)."""


@engines_cli.command("build-tiny")
@catalog_option
def build_tiny(catalog: str | None) -> None:
    """Build the catalog's tiny models (skips those already built)."""
    rd = local.run_dir()
    local.build_models(_load(catalog), rd)
    click.echo(f"tiny models ready under {rd / 'models'}")


@engines_cli.command("up")
@catalog_option
@click.option("--wait/--no-wait", default=True, help="Wait until every engine is healthy.")
@click.option("--timeout", type=float, default=300.0, show_default=True)
def up(catalog: str | None, wait: bool, timeout: float) -> None:
    """Start one vLLM server per local replica of the catalog (no duplicates)."""
    models = _load(catalog)
    rd = local.run_dir()
    reps = local.local_replicas(models)
    if not reps:
        click.echo("the catalog has no local launch specs: nothing to start")
        return
    local.build_models(models, rd)
    started = []
    try:
        for rep in reps:
            rec = local.start(rd, rep)
            verb = "started" if rec["started"] else "already running"
            click.echo(f"{rep.name}: {verb} (pid {rec['pid']}) {rep.url}")
            if rec["started"]:
                started.append(rep)
        if wait:
            took = local.wait_ready(rd, reps, timeout)
            for rep in started:
                click.echo(f"{rep.name}: ready after {took[rep.name]:.1f}s")
    except local.LaunchError as e:
        # all or nothing: the servers this call started stop with it (each holds GBs), the ones
        # that were already running are left as they were
        stopped = [rep.name for rep in started if local.stop(rd, rep)]
        note = f"\nstopped what this call had started: {', '.join(stopped)}" if stopped else ""
        raise click.ClickException(f"{e}{note}") from None
    click.echo(f"engines up (run dir {rd})")


@engines_cli.command("down")
@click.option("--grace", type=float, default=20.0, show_default=True)
def down(grace: float) -> None:
    """Stop every local engine recorded in the run directory (SIGTERM, wait, SIGKILL)."""
    stopped = local.stop_all(local.run_dir(), grace)
    click.echo(f"stopped {len(stopped)} engine(s)" + (f": {', '.join(stopped)}" if stopped else ""))


@engines_cli.command("status")
@catalog_option
def status(catalog: str | None) -> None:
    """List the catalog's local replicas: pid, state, memory."""
    for row in local.status(local.run_dir(), _load(catalog)):
        click.echo(
            f"{row['name']:<28} {row['state']:<8} pid={row['pid'] or '-':<8} "
            f"rss={row['rss_mb']:.0f}MiB {row['url']}"
        )
