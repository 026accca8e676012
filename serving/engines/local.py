"""Start and stop local vLLM engine processes for the catalog's `launch` specs.

Everything lives under a run directory the project owns (``$INFERBASE_HOME/engines``, by default
``instance/engines`` in the repository): ``models/`` (tiny models built here), ``procs/<name>.json``
(pid, port, command of each running server), ``logs/<name>.log`` and ``cache/`` (VLLM_CACHE_ROOT).
One server per replica, each in its own session so `down` can stop the server and its engine-core
children together. A second `up` finds the live servers by their pidfiles and starts only what is
missing.

`inferbase up` names the servers it started itself in ``$INFERBASE_ENGINES_STOP_ON_EXIT`` (their
record files) and gunicorn's `on_exit` hook (`serving.gconf`) stops them when the gateway stops
(Ctrl-C, SIGTERM): `stop_on_exit()`. Servers that were running before `up` are left running.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from serving.engines.base import CatalogModel

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINE_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


STOP_ON_EXIT_ENV = "INFERBASE_ENGINES_STOP_ON_EXIT"


class LaunchError(RuntimeError):
    pass


def run_dir(home: str | os.PathLike[str] | None = None) -> Path:
    base = home or os.environ.get("INFERBASE_HOME") or REPO_ROOT / "instance"
    return Path(base) / "engines"


@dataclass(frozen=True, slots=True)
class Replica:
    """One local server to run: a replica of a catalog model."""

    model: CatalogModel
    index: int
    port: int

    @property
    def name(self) -> str:
        return f"{self.model.id.replace('/', '--')}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def local_replicas(models: Iterable[CatalogModel]) -> list[Replica]:
    return [
        Replica(m, i, port) for m in models if m.launch for i, port in enumerate(m.launch["ports"])
    ]


def model_dir(rd: Path, launch: dict[str, Any] | Any) -> Path:
    p = Path(launch["model"]).expanduser()
    return p if p.is_absolute() else rd / "models" / p


def build_models(models: Iterable[CatalogModel], rd: Path) -> None:
    from serving.engines.tiny import TinySpec, build_tiny_model

    for m in models:
        if m.launch and m.launch.get("build") == "tiny":
            build_tiny_model(model_dir(rd, m.launch), TinySpec(seed=int(m.launch.get("seed", 0))))


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and shutil.which("vllm") is not None


def command(rep: Replica, rd: Path) -> list[str]:
    launch = rep.model.launch or {}
    args = [
        str(model_dir(rd, launch)),
        "--served-model-name", rep.model.served_name or rep.model.id,
        "--host", "127.0.0.1",
        "--port", str(rep.port),
        "--max-model-len", str(launch.get("max_model_len", 1024)),
    ]  # fmt: skip
    if has_gpu():
        return ["vllm", "serve", *args, *launch.get("extra_args", [])]
    # vllm-cpu: the `vllm` entry point cannot find its metadata (see STACK.md); eager is 2x faster
    # to start and as fast for toy models. (`--distributed-executor-backend uni` would save the
    # worker process, but vLLM's CPU platform turns it back into `mp`: OpenMP needs that.)
    cpu = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]
    return [*cpu, *args, "--enforce-eager", *launch.get("extra_args", [])]


# -- process records --------------------------------------------------------------------------
def _record_path(rd: Path, rep: Replica) -> Path:
    return record_file(rd, rep.name)


def read_record(rd: Path, rep: Replica) -> dict[str, Any] | None:
    return read_record_file(_record_path(rd, rep))


def record_alive(rec: dict[str, Any] | None) -> bool:
    """The recorded process still runs (same pid *and* start time, so a reused pid is not it)."""
    if not rec:
        return False
    try:
        proc = psutil.Process(rec["pid"])
        return abs(proc.create_time() - rec["create_time"]) < 1 and proc.status() not in (
            psutil.STATUS_ZOMBIE,
            psutil.STATUS_DEAD,
        )
    except (psutil.Error, KeyError):
        return False


def alive_urls(rd: Path) -> set[str]:
    """URLs of local servers whose process is alive (ready or still starting)."""
    urls: set[str] = set()
    for f in (rd / "procs").glob("*.json"):
        rec = read_record_file(f)
        if rec is not None and record_alive(rec):
            urls.add(rec["url"])
    return urls


def process_alive_checker(rd: Path):  # -> Callable[[str], bool]
    def alive(url: str) -> bool:
        return url in alive_urls(rd)

    return alive


def _port_open(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code < 600
    except httpx.HTTPError:
        return False


# -- up / down --------------------------------------------------------------------------------
def start(rd: Path, rep: Replica) -> dict[str, Any]:
    """Start the server for one replica unless it already runs. Returns its record."""
    rec = read_record(rd, rep)
    if record_alive(rec):
        assert rec is not None
        return {**rec, "started": False}
    if _port_open(rep.port):
        raise LaunchError(f"port {rep.port} for {rep.name} is taken by a process we did not start")
    for sub in ("procs", "logs", "cache"):
        (rd / sub).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ENGINE_ENV, "VLLM_CACHE_ROOT": str(rd / "cache")}
    env.update((rep.model.launch or {}).get("env", {}))
    cmd = command(rep, rd)
    log = open(rd / "logs" / f"{rep.name}.log", "ab")  # noqa: SIM115 (the child owns it)
    with log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True, cwd=rd,
        )  # fmt: skip
    rec = {
        "name": rep.name,
        "model": rep.model.id,
        "url": rep.url,
        "port": rep.port,
        "pid": proc.pid,
        "create_time": psutil.Process(proc.pid).create_time(),
        "started_at": time.time(),
        "cmd": cmd,
        "log": str(rd / "logs" / f"{rep.name}.log"),
    }
    _record_path(rd, rep).write_text(json.dumps(rec, indent=2))
    logger.info("started %s (pid %d) on %s", rep.name, proc.pid, rep.url)
    return {**rec, "started": True}


def wait_ready(rd: Path, reps: list[Replica], timeout_s: float = 300.0) -> dict[str, float]:
    """Wait until every replica answers /health 200. Returns seconds to ready per replica name.
    Fails fast (with the log's tail) when a process exits."""
    pending = {r.name: r for r in reps}
    ready: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while pending:
        for name, rep in list(pending.items()):
            rec = read_record(rd, rep)
            try:
                if httpx.get(rep.url + "/health", timeout=2.0).status_code == 200:
                    ready[name] = time.time() - (rec or {}).get("started_at", time.time())
                    del pending[name]
                    continue
            except httpx.HTTPError:
                pass
            if not record_alive(rec):
                tail = _tail(rd / "logs" / f"{name}.log")
                raise LaunchError(f"engine {name} exited during start-up; log tail:\n{tail}")
        if pending and time.monotonic() > deadline:
            raise LaunchError(f"engines not ready after {timeout_s:.0f}s: {sorted(pending)}")
        if pending:
            time.sleep(0.5)
    return ready


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def stop(rd: Path, rep: Replica, grace_s: float = 20.0) -> bool:
    """SIGTERM the server's process group, wait, then SIGKILL. Returns True if one was running."""
    return stop_record(_record_path(rd, rep), grace_s)


def stop_all(rd: Path, grace_s: float = 20.0) -> list[str]:
    """Stop every server recorded in the run directory (whatever catalog started it)."""
    stopped = []
    for path in sorted((rd / "procs").glob("*.json")):
        if stop_record(path, grace_s):
            stopped.append(path.stem)
    return stopped


def record_file(rd: Path, name: str) -> Path:
    """Where the record of the server `name` (a `Replica.name`) lives."""
    return rd / "procs" / f"{name}.json"


def running(rd: Path) -> set[str]:
    """Names of the servers recorded in the run directory whose process is alive."""
    return {f.stem for f in (rd / "procs").glob("*.json") if record_alive(read_record_file(f))}


def read_record_file(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def stop_on_exit(grace_s: float = 20.0) -> list[str]:
    """Stop the servers whose record files ``$INFERBASE_ENGINES_STOP_ON_EXIT`` lists (separated by
    `os.pathsep`): those `inferbase up` started. Returns the names of those that were running."""
    paths = [Path(p) for p in os.environ.get(STOP_ON_EXIT_ENV, "").split(os.pathsep) if p]
    return [path.stem for path in paths if stop_record(path, grace_s)]


def stop_record(path: Path, grace_s: float = 20.0) -> bool:
    rec = read_record_file(path)
    if not record_alive(rec):
        path.unlink(missing_ok=True)
        return False
    assert rec is not None
    pid = rec["pid"]
    _signal_group(pid, signal.SIGTERM)
    try:
        psutil.Process(pid).wait(timeout=grace_s)
    except psutil.TimeoutExpired:
        logger.warning("%s did not stop in %.0fs; killing it", rec.get("name"), grace_s)
    except psutil.NoSuchProcess:
        pass
    _signal_group(pid, signal.SIGKILL)  # leftovers of the group (engine core), if any
    path.unlink(missing_ok=True)
    logger.info("stopped %s (pid %d)", rec.get("name"), pid)
    return True


def memory_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except psutil.Error:
        return 0.0


def kill(rd: Path, rep: Replica) -> None:
    """SIGKILL a replica's whole process group at once (a crash, for tests and `engines kill`)."""
    rec = read_record(rd, rep)
    if record_alive(rec):
        assert rec is not None
        _signal_group(rec["pid"], signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def status(rd: Path, models: Iterable[CatalogModel]) -> list[dict[str, Any]]:
    rows = []
    for rep in local_replicas(models):
        rec = read_record(rd, rep)
        alive = record_alive(rec)
        health = "stopped"
        if alive:
            try:
                ok = httpx.get(rep.url + "/health", timeout=1.0).status_code == 200
                health = "ready" if ok else "loading"
            except httpx.HTTPError:
                health = "loading"
        pid = rec["pid"] if alive and rec else None
        rows.append({"name": rep.name, "model": rep.model.id, "url": rep.url, "pid": pid,
                     "state": health, "rss_mb": memory_mb(pid) if pid else 0.0})  # fmt: skip
    return rows
