"""gunicorn server hooks of `inferbase serve` (``gunicorn -c python:serving.gconf``; gunicorn reads
only the names of its settings from this module).

`on_starting` (master, before any worker) prepares Prometheus' multiprocess mode
(`serving/metrics.py`): `PROMETHEUS_MULTIPROC_DIR` is the operator's directory, emptied of the
last run's files, or a fresh temporary one removed again at exit. Workers inherit it, so their
metrics are summed on every scrape. `child_exit` (master) tells prometheus_client that a worker
died, so its live gauges (open streams) stop counting; its counters stay in the sums.

`on_exit` runs in the master when the server stops (SIGINT/Ctrl-C, SIGTERM, or a failed boot): it
stops the local engines `inferbase up` started (`serving.engines.local.stop_on_exit`). With plain
`serve`, or engines that ran before `up`, there are none and nothing is stopped.

`child_exit` runs in the master each time it has reaped a worker (crashed, SIGKILLed by the OOM
killer or an operator, timed out, or stopped): the credit reservations that worker still held are
released at once (`serving.ledger.release_holder`; each names its holder, "host:boot:pid"), so its
requests are not billed and the account's credit is free again, instead of held until
`RESERVATION_TTL_S` (one hour). The expiry sweep stays the fallback (a whole host that died).

`post_worker_init` starts a thread in each worker that hands the C heap's free pages back to the
system every `TRIM_INTERVAL_S` (glibc's `malloc_trim`; nothing elsewhere). SQLite's allocations
on the request threads leave the heap fragmented: in `benchmarks/soak.py` (200 streams, SQLite)
the gateway's RSS grew 474 -> 535 MiB in 50 s of load without it and 426 -> 445 MiB with it, and
over five minutes 506 -> 579 MiB without it and 445 -> 496 MiB with it (flat after ~3 minutes),
while SQLite's own count of its memory stayed bounded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import shutil
import tempfile
import threading
import time
from typing import Any

TRIM_INTERVAL_S = 5.0

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_CREATED_ENV = "INFERBASE_METRICS_DIR_CREATED"  # the directory on_starting made (to remove)


def on_starting(server: Any) -> None:
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for f in glob.glob(os.path.join(path, "*.db")):  # the last run's workers' values
            os.remove(f)
    else:
        path = tempfile.mkdtemp(prefix="inferbase-metrics-")
        os.environ[MULTIPROC_ENV] = path
        os.environ[_CREATED_ENV] = path
    server.log.debug("prometheus multiprocess directory: %s", path)
    # imported now (the directory set), so that reaping a worker does not wait for the import
    # before the next one is started
    from prometheus_client import multiprocess  # noqa: F401


def on_exit(server: Any) -> None:
    created = os.environ.get(_CREATED_ENV)
    if created and created == os.environ.get(MULTIPROC_ENV):
        shutil.rmtree(created, ignore_errors=True)

    from serving.engines import local

    if not os.environ.get(local.STOP_ON_EXIT_ENV):
        return
    server.log.info("stopping the local engines `inferbase up` started")
    stopped = local.stop_on_exit()
    server.log.info("stopped %d local engine(s): %s", len(stopped), ", ".join(stopped) or "-")


def child_exit(server: Any, worker: Any) -> None:
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)
    try:
        released = release_worker(worker.pid)
    except Exception:  # never take the master down; the expiry sweep releases them later
        server.log.exception("could not release the reservations of worker %s", worker.pid)
        return
    if released:
        server.log.warning(
            "released %d open reservation(s) of worker (pid:%s), which exited", released, worker.pid
        )


def release_worker(pid: int) -> int:
    """Release the open reservations of this host's process `pid`, on the gateway's database
    (configured as the workers are: INFERBASE_* environment variables)."""
    from flask import Flask

    from serving import config, db, ledger

    app = Flask("serving")
    config.load_config(app, None)
    engine = db.make_engine(app.config["DATABASE_URL"], pool_size=1)
    try:
        return ledger.release_holder(engine, ledger.holder_id(pid))
    finally:
        engine.dispose()


def post_worker_init(worker: Any) -> None:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "malloc_trim"):  # not glibc
        return

    def trim() -> None:
        while True:
            time.sleep(TRIM_INTERVAL_S)
            libc.malloc_trim(0)

    threading.Thread(target=trim, name="malloc-trim", daemon=True).start()
