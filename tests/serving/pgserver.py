"""A throw-away PostgreSQL server of a test's own (`initdb` + `pg_ctl` on a free port, its data and
socket under the test's temporary folder), so a test can restart or stop it without touching the
shared server other tests use. Skipped where the PostgreSQL server binaries are not installed."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.serving.conftest import free_port


def bindir() -> Path | None:
    """The newest installed PostgreSQL's server binaries (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3])
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


@dataclass
class PgServer:
    bin: Path
    data: Path
    port: int
    log: Path
    user: str | None  # run the server as this user (initdb refuses root)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/gateway"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise subprocess.CalledProcessError(
                done.returncode, cmd, done.stdout, done.stderr + self._log_tail()
            )

    def _log_tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""

    def pg_ctl(self, action: str, *extra: str) -> None:
        opts = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", action, *extra
        )


@contextmanager
def throwaway_postgres(tmp: Path) -> Iterator[PgServer]:
    """Start a new PostgreSQL on a free port with an empty `gateway` database; stop it after."""
    found = bindir()
    if found is None:
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    user = None
    home = tmp / "pg"
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as `postgres`, in a
        user = "postgres"  # folder it can reach (pytest's are private to root)
        home = Path(tempfile.mkdtemp(prefix="inferbase-pg-"))
        shutil.chown(home, user)
    else:
        home.mkdir()
    server = PgServer(found, home / "data", free_port(), home / "server.log", user)
    server._run("initdb", "-D", str(server.data), "-U", "postgres", "-A", "trust", "--no-sync")
    server.pg_ctl("start")
    try:
        admin = sa.create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE gateway")
        admin.dispose()
        yield server
    finally:
        try:
            server.pg_ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
        if user:
            shutil.rmtree(home, ignore_errors=True)
