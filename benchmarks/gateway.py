"""Gateway overhead: the same load straight at an upstream, through Inferbase and through LiteLLM.

One run on this machine: a fast OpenAI-compatible upstream (benchmarks/fake_upstream.py; the tiny
vLLM engine on 2 CPU cores would be the bottleneck), the Inferbase gateway (gunicorn; authenticated,
billed, usage-logged, on SQLite) and the LiteLLM proxy (its own virtualenv, simplest configuration,
no database) in front of it. wrk drives non-streaming and streaming requests at 1, 16 and 64
concurrent connections; a sequential client measures time to first token; the gateway's CPU time
per request comes from its process tree. One proxy runs at a time (the gateway stops before
LiteLLM starts). Prints one markdown table and the issue's targets judged on it.

With `--libraries` it measures instead, for each hand-written piece on the request path, what the
best-kept library doing the same job would cost: CPU per request (process CPU time over N requests,
the variants interleaved in rounds, median over rounds; wall-clock throughput means little on a
shared machine) of the gateway under `serving.gworker` against stock gunicorn `gthread`, of one
shared listening socket against a socket per worker (`--parts listen`), and of the engine client
`serving.engines.wire` against urllib3, httpcore and httpx (benchmarks/engine_client.py), each as a
share of the gateway's CPU per request.

    python benchmarks/gateway.py [--duration 5] [--no-litellm] [--reuse-port]
    python benchmarks/gateway.py --libraries [--rounds 6] [--n 600] [--port-base 18301]
    python benchmarks/gateway.py --libraries --parts capture [--database-url postgresql+psycopg://…]
    python benchmarks/gateway.py --libraries --parts metrics [--rounds 4] [--n 300]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine_client  # noqa: E402  (benchmarks/, this script's directory)

from serving.cli import gunicorn_argv  # noqa: E402

PY = sys.executable
UPSTREAM_PORT, GATEWAY_PORT, LITELLM_PORT = 18301, 18302, 18303
MODEL = "bench/upstream"
LITELLM_KEY = "sk-bench-" + "0123456789abcdef" * 2
LITELLM_VENV = ROOT / ".venv-litellm"


def wait_http(
    url: str,
    timeout: float = 120.0,
    headers: dict[str, str] | None = None,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Wait until `url` answers; fail early when `proc` exited, and say what its `log` ends with."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers or {}), timeout=2
            ):
                return
        except Exception:
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.3)
    exited = proc is not None and proc.poll() is not None
    why = "exited" if exited else f"not ready after {timeout}s"
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{url} {why}" + (f"; its log ends:\n{tail}" if tail else ""))


def spawn(stack: ExitStack, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = log.open("w")
    proc = subprocess.Popen(
        cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
    )

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        fh.close()

    stack.callback(stop)
    return proc


def start_upstream(stack: ExitStack, tmp: Path, port: int = UPSTREAM_PORT) -> None:
    spawn(
        stack,
        [PY, str(ROOT / "benchmarks" / "fake_upstream.py"), "--port", str(port)],
        dict(os.environ),
        tmp / "upstream.log",
    )
    wait_http(f"http://127.0.0.1:{port}/health")


def gateway_home(home: Path, upstream_port: int = UPSTREAM_PORT) -> tuple[dict[str, str], str]:
    """The gateway's environment (a database with one funded account) and an API key for it."""
    genv = gateway_env(home, upstream_port)
    inferbase(genv, "db", "upgrade")
    inferbase(genv, "accounts", "create", "bench@example.com", "--credits", "1000000")
    key = inferbase(
        genv, "keys", "create", "--account", "bench@example.com", "--name", "bench"
    ).splitlines()[-1]
    return genv, key


def gateway_env(home: Path, upstream_port: int = UPSTREAM_PORT) -> dict[str, str]:
    catalog = home / "catalog.yaml"
    catalog.write_text(
        "models:\n"
        f"  - id: {MODEL}\n"
        "    price_usd_per_mtok: {input: 0.10, output: 0.40}\n"
        "    context_length: 8192\n"
        f"    replicas: [http://127.0.0.1:{upstream_port}]\n"
    )
    env = dict(os.environ)
    env.update(
        INFERBASE_HOME=str(home),
        INFERBASE_DATABASE_URL=f"sqlite:///{home / 'bench.db'}",
        INFERBASE_CATALOG=str(catalog),
        INFERBASE_DEFAULT_RPM="100000000",
        INFERBASE_DEFAULT_TPM="100000000000",
        INFERBASE_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def inferbase(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [PY, "-m", "serving.cli", *args], env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def ensure_litellm() -> Path | None:
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True
        )
    except subprocess.CalledProcessError:
        return None
    return exe


WRK_LUA = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def parse_ms(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    assert m, v
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def run_wrk(url: str, key: str, stream: bool, conns: int, duration: int, tmp: Path) -> dict:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say something short."}],
        "max_tokens": 8,
        "stream": stream,
    }
    lua = tmp / f"wrk-{os.getpid()}.lua"
    lua.write_text(WRK_LUA.format(body=json.dumps(body), key=key))
    threads = 1 if conns == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pct = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.M))
    if "50" not in pct or "99" not in pct:
        raise RuntimeError(f"wrk gave no latency distribution for {url}:\n{out}")
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"timeout (\d+)", out)
    return {
        "p50": parse_ms(pct["50"]),
        "p99": parse_ms(pct["99"]),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": total,
        # non-2xx answers plus requests wrk gave up on (its 2 s timeout)
        "errors": (int(errors.group(1)) if errors else 0)
        + (int(timeouts.group(1)) if timeouts else 0),
    }


def ttft(url: str, key: str, n: int = 100, keep_alive: bool = True) -> float:
    """Median time to the first content chunk of a streamed completion, sequential requests: on
    one kept-alive connection (as the OpenAI SDKs' pooled clients send them), or on a new
    connection each time."""
    host, port = "127.0.0.1", int(url.split(":")[2].split("/")[0])
    path = "/" + url.split("/", 3)[3]
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    ).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n"
        + ("" if keep_alive else "Connection: close\r\n")
        + "\r\n"
    ).encode()
    times = []
    s = socket.create_connection((host, port)) if keep_alive else None
    for _ in range(n):
        if not keep_alive:
            s = socket.create_connection((host, port))
        assert s is not None
        t0 = time.perf_counter()
        s.sendall(head + body)
        buf = b""
        while b'"content"' not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        times.append((time.perf_counter() - t0) * 1000)
        while b"[DONE]" not in buf:  # read the stream to its end before the next request
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        if keep_alive:
            while not buf.endswith(b"0\r\n\r\n"):  # the chunked terminator
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError(f"{url} closed a kept-alive connection")
                buf += chunk
        else:
            s.close()
    if keep_alive and s is not None:
        s.close()
    return statistics.median(times)


def tree_cpu(pid: int) -> float:
    p = psutil.Process(pid)
    total = 0.0
    for q in [p, *p.children(recursive=True)]:
        try:
            t = q.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument(
        "--workers",
        type=int,
        default=(os.cpu_count() or 1) + 1,
        help="worker processes of each proxy (as `inferbase serve` defaults: cores + 1)",
    )
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument(
        "--reuse-port",
        action="store_true",
        help="serve with a socket per worker (SO_REUSEPORT) instead of one shared socket",
    )
    ap.add_argument("--libraries", action="store_true", help="hand-written pieces vs libraries")
    ap.add_argument("--rounds", type=int, default=6, help="--libraries: interleaved rounds")
    ap.add_argument("--n", type=int, default=600, help="--libraries: requests per variant a round")
    ap.add_argument("--port-base", type=int, default=UPSTREAM_PORT)
    ap.add_argument(
        "--parts",
        default="worker,dispatch,engine",
        help="--libraries: which comparisons to run (engine needs the worker run's numbers; "
        "listen: one shared listening socket against a socket per worker; "
        "capture: opt-in traffic capture on against off; "
        "`metrics`: Prometheus metrics and the JSON log line on against off)",
    )
    ap.add_argument(
        "--database-url", default=None, help="--parts capture: this database instead of SQLite"
    )
    args = ap.parse_args()
    if args.libraries:
        libraries(
            args.workers,
            args.rounds,
            args.n,
            args.port_base,
            set(args.parts.split(",")),
            args.database_url,
        )
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        start_upstream(stack, tmp)
        genv, gkey = gateway_home(tmp)
        gw_stack = stack.enter_context(ExitStack())
        gw = spawn(
            gw_stack,
            [
                PY,
                "-m",
                "serving.cli",
                "serve",
                "--port",
                str(GATEWAY_PORT),
                "--workers",
                str(args.workers),
                *(["--reuse-port"] if args.reuse_port else []),
            ],
            genv,
            tmp / "gateway.log",
        )
        wait_http(f"http://127.0.0.1:{GATEWAY_PORT}/api/v1/inference/models")

        targets = {
            "direct": (f"http://127.0.0.1:{UPSTREAM_PORT}/v1/chat/completions", "none", None),
            "inferbase": (
                f"http://127.0.0.1:{GATEWAY_PORT}/api/v1/inference/chat/completions",
                gkey,
                gw.pid,
            ),
        }
        rows: list[dict] = []
        for name, (url, key, pid) in targets.items():
            measure(rows, name, url, key, pid, args.duration, tmp)
        # one proxy at a time: the gateway stops before LiteLLM starts, so neither one's idle
        # threads run during the other's measurements
        gw_stack.close()
        if not args.no_litellm and (exe := ensure_litellm()):
            cfg = tmp / "litellm.yaml"
            cfg.write_text(
                "model_list:\n"
                f"  - model_name: {MODEL}\n"
                "    litellm_params:\n"
                f"      model: openai/{MODEL}\n"
                f"      api_base: http://127.0.0.1:{UPSTREAM_PORT}/v1\n"
                "      api_key: dummy\n"
            )
            # no network here: use the bundled model cost map instead of fetching it
            lenv = dict(
                os.environ,
                LITELLM_MASTER_KEY=LITELLM_KEY,
                LITELLM_LOCAL_MODEL_COST_MAP="True",
                LITELLM_TELEMETRY="False",
            )
            ll = spawn(
                stack,
                [
                    str(exe),
                    "--config",
                    str(cfg),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(LITELLM_PORT),
                    "--num_workers",
                    str(args.workers),
                ],
                lenv,
                tmp / "litellm.log",
            )
            wait_http(f"http://127.0.0.1:{LITELLM_PORT}/health/liveliness", timeout=400)
            url = f"http://127.0.0.1:{LITELLM_PORT}/v1/chat/completions"
            measure(rows, "litellm", url, LITELLM_KEY, ll.pid, args.duration, tmp)

        report(rows)


def measure(
    rows: list[dict], name: str, url: str, key: str, pid: int | None, duration: int, tmp: Path
) -> None:
    """The same load at one target: TTFT, then wrk json and stream at 1, 16 and 64 clients, with
    the target's CPU time over each wrk run (its process tree)."""
    run_wrk(url, key, False, 4, 2, tmp)  # warm-up
    first_token = ttft(url, key)
    first_token_new = ttft(url, key, keep_alive=False)
    for stream in (False, True):
        for conns in (1, 16, 64):
            cpu0 = tree_cpu(pid) if pid else 0.0
            r = run_wrk(url, key, stream, conns, duration, tmp)
            cpu = (tree_cpu(pid) - cpu0) if pid else 0.0
            r.update(
                target=name,
                stream=stream,
                conns=conns,
                cpu_ms=(cpu * 1000 / r["requests"]) if pid and r["requests"] else 0.0,
                ttft=first_token,
                ttft_new=first_token_new,
            )
            rows.append(r)


def report(rows: list[dict]) -> None:
    direct = {(r["stream"], r["conns"]): r for r in rows if r["target"] == "direct"}
    print(
        "| target | mode | clients | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| CPU ms/req | TTFT ms (seq, keep-alive) | TTFT ms (seq, new conn.) | non-2xx |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d = direct[(r["stream"], r["conns"])]
        ok = r["requests"] > 0 and r["p50"] > 0  # wrk measured completed requests
        lat = (
            f"| {r['p50']:.2f} | {r['p99']:.2f} "
            f"| {r['p50'] - d['p50']:.2f} | {r['p99'] - d['p99']:.2f} "
            if ok
            else "| n/a | n/a | n/a | n/a "
        )
        cpu = f"{r['cpu_ms']:.2f}" if r["requests"] else "n/a"
        print(
            f"| {r['target']} | {'stream' if r['stream'] else 'json'} | {r['conns']} "
            f"| {r['rps']:.0f} {lat}| {cpu} | {r['ttft']:.2f} | {r['ttft_new']:.2f} "
            f"| {r['errors']} |"
        )
    targets_check(rows, direct)


def targets_check(rows: list[dict], direct: dict) -> None:
    """Issue #3's targets for the gateway, judged on this run's numbers."""
    ours = [r for r in rows if r["target"] == "inferbase"]
    if not ours:
        return
    one = next(r for r in ours if not r["stream"] and r["conns"] == 1)
    added = one["p50"] - direct[(False, 1)]["p50"]
    best = max(r["rps"] for r in ours if not r["stream"])
    ttft_added = one["ttft"] - next(r for r in rows if r["target"] == "direct")["ttft"]
    new_added = one["ttft_new"] - next(r for r in rows if r["target"] == "direct")["ttft_new"]
    cpu = max(r["cpu_ms"] for r in ours if not r["stream"])
    print()
    print("| target (issue #3) | this run | met |")
    print("|---|---:|---|")
    for name, value, goal in (
        ("added p50, 1 client, json (ms) <= 2", added, added <= 2),
        ("throughput, json (req/s) >= 1000", best, best >= 1000),
        ("TTFT added, sequential, keep-alive (ms) <= 2", ttft_added, ttft_added <= 2),
        ("(TTFT added, a new connection each request (ms))", new_added, new_added <= 2),
        ("gateway CPU per json request (ms) <= 2", cpu, cpu <= 2),
    ):
        print(f"| {name} | {value:.2f} | {'yes' if goal else 'NO'} |")


def load(
    port: int, key: str, stream: bool, n: int, conns: int, times: list[float] | None = None
) -> None:
    """`n` chat requests over `conns` kept-alive connections, each sent when the last one ended
    (each one's wall-clock ms appended to `times` when given)."""
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "Say something short."}],
         "max_tokens": 8, "stream": stream}
    ).encode()  # fmt: skip
    head = (
        f"POST /api/v1/inference/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    end = b"\r\n0\r\n\r\n"  # a chunked body's last chunk, after the head's blank line

    def client(count: int) -> None:
        s = socket.create_connection(("127.0.0.1", port))
        for _ in range(count):
            t0 = time.perf_counter()
            s.sendall(head + body)
            buf = b""
            while True:
                got = s.recv(65536)
                if not got:
                    raise RuntimeError("the gateway closed a kept-alive connection")
                buf += got
                h = buf.find(b"\r\n\r\n")
                if h < 0:
                    continue
                if not buf.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(buf[:300].decode(errors="replace"))
                if stream:
                    if buf[h:].endswith(end):
                        break
                else:
                    m = re.search(rb"(?i)content-length: (\d+)", buf[:h])
                    if m and len(buf) - h - 4 >= int(m.group(1)):
                        break
            if times is not None:
                times.append((time.perf_counter() - t0) * 1000)
        s.close()

    threads = [
        threading.Thread(target=client, args=(n // conns + (i < n % conns),)) for i in range(conns)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


WORKERS = {"gworker": "serving.gworker.Worker", "gthread": "gthread"}


# the listening socket: one shared by the workers (`inferbase serve`'s default), or one per worker
LISTEN = {"gworker": "serving.gworker.Worker", "gworker --reuse-port": "reuse-port"}


def worker_argv(bind: str, workers: int, worker: str) -> list[str]:
    """`inferbase serve`'s gunicorn command line with another worker class (or SO_REUSEPORT)."""
    if worker == "reuse-port":
        return gunicorn_argv(bind, workers, 64, reuse_port=True)
    argv = gunicorn_argv(bind, workers, 64)
    argv[argv.index("--worker-class") + 1] = worker
    return argv


def dispatch_cost(tmp: Path, upstream_port: int, rounds: int, n: int) -> None:
    """The chat endpoint answered lean by serving.front.Front against the same view behind Flask's
    request dispatch (URL matching, request context, hooks, a `Response`): CPU per request of the
    whole app called in this process (auth, validation, ledger, engine call included), interleaved
    rounds, median."""
    genv, key = gateway_home(tmp, upstream_port)
    saved = dict(os.environ)
    os.environ.update(genv)
    try:
        from flask import request

        from serving import create_app
        from serving.api.chat import chat_completions
        from serving.incoming import Incoming

        app = create_app()

        def flask_chat() -> object:
            reply = chat_completions(Incoming(request.environ))
            return app.response_class(reply.body, status=reply.status, headers=reply.headers)

        app.add_url_rule("/bench/flask-chat", "bench_flask_chat", flask_chat, methods=["POST"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "Say something short."}],
         "max_tokens": 8}
    ).encode()  # fmt: skip
    base_env = {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Bearer {key}",
    }  # fmt: skip
    status: list[str] = []

    def start_response(st: str, headers: list[tuple[str, str]], *exc: object) -> None:
        status.append(st)

    def call(path: str) -> None:
        env = dict(base_env, PATH_INFO=path)
        env["wsgi.input"] = io.BytesIO(body)
        out = app.wsgi_app(env, start_response)
        b"".join(out)
        if hasattr(out, "close"):
            out.close()
        if not status.pop().startswith("200"):
            raise RuntimeError(f"{path} did not answer 200")

    paths = {"lean (Front)": "/api/v1/inference/chat/completions", "Flask": "/bench/flask-chat"}
    cpu: dict[str, list[float]] = {label: [] for label in paths}
    for path in paths.values():
        for _ in range(100):
            call(path)
    for _ in range(rounds):
        for label, path in paths.items():
            c0 = time.process_time()
            for _ in range(n):
                call(path)
            cpu[label].append((time.process_time() - c0) * 1000 / n)
    lean = statistics.median(cpu["lean (Front)"])
    print()
    print("chat endpoint, whole app in-process, CPU ms per json request (median [min-max]):")
    print("| dispatch | CPU ms/req | beyond lean, share of its request CPU |")
    print("|---|---:|---:|")
    for label, xs in cpu.items():
        med = statistics.median(xs)
        share = (med - lean) / med * 100
        print(f"| {label} | {med:.3f} [{min(xs):.3f}-{max(xs):.3f}] | {share:+.1f}% |")
    app.extensions["engines"].close()


def capture_cost(tmp: Path, upstream_port: int, rounds: int, n: int, db_url: str | None) -> None:
    """Opt-in traffic capture (serving/traffic.py) on the hot path: the whole app in this process
    (auth, ledger, engine call, the capture row in the settlement's transaction), a key with
    capture off, a second such key (the noise floor: off against off) and a key capturing every
    request; CPU and wall time per request, interleaved rounds, medians."""
    genv, off = gateway_home(tmp, upstream_port)
    if db_url:
        genv["INFERBASE_DATABASE_URL"] = db_url
        inferbase(genv, "db", "upgrade")
        inferbase(genv, "accounts", "create", "bench@example.com", "--credits", "1000000")
        off = inferbase(
            genv, "keys", "create", "--account", "bench@example.com", "--name", "off"
        ).splitlines()[-1]
    new_key = ["keys", "create", "--account", "bench@example.com", "--name"]
    off2 = inferbase(genv, *new_key, "off2").splitlines()[-1]
    on = inferbase(genv, *new_key, "on", "--capture", "1").splitlines()[-1]
    saved = dict(os.environ)
    os.environ.update(genv)
    try:
        from serving import create_app

        app = create_app()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    bodies = {
        stream: json.dumps(
            {"model": MODEL, "max_tokens": 8, "stream": stream, "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Say something short about capture overhead."}]}
        ).encode()
        for stream in (False, True)
    }  # fmt: skip
    status: list[str] = []

    def start_response(st: str, headers: list[tuple[str, str]], *exc: object) -> None:
        status.append(st)

    def call(key: str, stream: bool) -> float:
        body = bodies[stream]
        env = {
            "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Bearer {key}",
            "PATH_INFO": "/api/v1/inference/chat/completions", "wsgi.input": io.BytesIO(body),
        }  # fmt: skip
        t0 = time.perf_counter()
        out = app.wsgi_app(env, start_response)
        b"".join(out)
        if hasattr(out, "close"):
            out.close()
        wall = (time.perf_counter() - t0) * 1000
        if not status.pop().startswith("200"):
            raise RuntimeError("the chat request did not answer 200")
        return wall

    keys = {"capture off": off, "capture off (2nd key)": off2, "capture on (rate 1)": on}
    print()
    print(f"opt-in capture, whole app in-process ({app.config['DATABASE_URL'].split(':')[0]}), ")
    print(f"{rounds} rounds of {n} requests a variant, interleaved request by request; medians:")
    print("| mode | variant | CPU ms/req | wall p50 ms | added CPU ms | added p50 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for stream in (False, True):
        for key in keys.values():
            for _ in range(100):
                call(key, stream)
        # interleaved request by request (the machine's load changes by the second here, and
        # every variant should see the same): CPU and wall time of each request, per variant
        cpu: dict[str, list[float]] = {label: [] for label in keys}
        p50: dict[str, list[float]] = {label: [] for label in keys}
        order = list(keys.items())
        for _ in range(rounds):
            walls: dict[str, list[float]] = {label: [] for label in keys}
            cpus: dict[str, float] = dict.fromkeys(keys, 0.0)
            for i in range(n):
                for label, key in order[i % 3 :] + order[: i % 3]:
                    c0 = time.process_time()
                    walls[label].append(call(key, stream))
                    cpus[label] += time.process_time() - c0
            for label in keys:
                cpu[label].append(cpus[label] * 1000 / n)
                p50[label].append(statistics.median(walls[label]))
        base_cpu = statistics.median(cpu["capture off"])
        base_p50 = statistics.median(p50["capture off"])
        for label in keys:
            c, w = statistics.median(cpu[label]), statistics.median(p50[label])
            print(
                f"| {'stream' if stream else 'json'} | {label} | {c:.3f} | {w:.3f} "
                f"| {c - base_cpu:+.3f} | {w - base_p50:+.3f} |"
            )
    app.extensions["engines"].close()


def libraries(
    workers: int, rounds: int, n: int, base: int, parts: set[str], db_url: str | None = None
) -> None:
    if "capture" in parts:
        with ExitStack() as stack, tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            start_upstream(stack, tmp, base)
            capture_cost(tmp, base, rounds, n, db_url)
    ours = worker_cost(workers, rounds, n, base) if parts & {"worker", "engine"} else {}
    if "listen" in parts:
        worker_cost(workers, rounds, n, base + 40, LISTEN)
    if "dispatch" in parts:
        with ExitStack() as stack, tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            start_upstream(stack, tmp, base)
            dispatch_cost(tmp, base, rounds, n)
    if "engine" in parts:
        engine_cost(rounds, n, base, ours)
    if "metrics" in parts:
        metrics_cost(workers, rounds, n, base)


METRICS_VARIANTS = {
    "metrics off": {"INFERBASE_METRICS": "false"},
    "metrics on": {"INFERBASE_METRICS": "true"},
    "metrics on + JSON log line": {
        "INFERBASE_METRICS": "true",
        "INFERBASE_LOG_LEVEL": "INFO",
        "INFERBASE_LOG_FORMAT": "json",
    },
}


RECORDER_BENCH = """
import sys, time
from serving.metrics import Recorder
r, n = Recorder(), int(sys.argv[1])
def json_request():
    r.request("/api/v1/inference/chat/completions", "POST", 200)
    r.routed("general_qa", "bench/upstream", "balanced")
    r.settled("bench/upstream", False, "success", 12, 8, 5, 0.0004, None)
def stream_request():
    r.request("/api/v1/inference/chat/completions", "POST", 200)
    r.stream_opened()
    r.settled("bench/upstream", True, "success", 12, 8, 5, 0.0004, 0.0009)
    r.stream_closed()
for f in (json_request, stream_request):
    for _ in range(1000):
        f()
    t0 = time.process_time()
    for _ in range(n):
        f()
    print(f.__name__, (time.process_time() - t0) / n * 1e6)
"""


def recorder_cost(n: int = 50_000) -> dict[str, float]:
    """CPU microseconds of the metric writes one chat request makes (`serving.metrics.Recorder`),
    in multiprocess mode (mmap files), in a process of their own."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=tmp, PYTHONPATH=str(ROOT))
        out = subprocess.run(
            [PY, "-c", RECORDER_BENCH, str(n)], env=env, capture_output=True, text=True, check=True
        ).stdout
    return {name: float(us) for name, us in (line.split() for line in out.splitlines())}


def metrics_cost(workers: int, rounds: int, n: int, base: int) -> None:
    """The gateway with Prometheus metrics off, on (multiprocess mode, as `inferbase serve` runs
    it), and on with the per-request JSON log line written (to a file): CPU per request and, for
    one client, the median request time, interleaved rounds."""
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        start_upstream(stack, tmp, base)
        genv, key = gateway_home(tmp, base)
        servers = {}
        for i, (name, extra) in enumerate(METRICS_VARIANTS.items()):
            port = base + 1 + i
            argv = gunicorn_argv(f"127.0.0.1:{port}", workers, 64)
            proc = spawn(stack, argv, {**genv, **extra}, tmp / f"metrics-{i}.log")
            servers[name] = (port, proc.pid)
        for port, _ in servers.values():
            wait_http(f"http://127.0.0.1:{port}/api/v1/inference/models")
        loads = (("json, 1 client", False, 1), ("json, 16", False, 16), ("stream, 16", True, 16))
        cpu: dict[tuple[str, str], list[float]] = {}
        p50: dict[str, list[float]] = {}
        for label, stream, conns in loads:
            for port, _ in servers.values():
                load(port, key, stream, 100, conns)  # warm-up
            for _ in range(rounds):
                for name, (port, pid) in servers.items():
                    times: list[float] = []
                    c0 = tree_cpu(pid)
                    load(port, key, stream, n, conns, times if conns == 1 else None)
                    cpu.setdefault((name, label), []).append((tree_cpu(pid) - c0) * 1000 / n)
                    if times:
                        p50.setdefault(name, []).append(statistics.median(times))
        off = "metrics off"
        print(f"gateway with Prometheus metrics off and on ({workers} workers, kept-alive clients;")
        print(f"{rounds} interleaved rounds of {n} requests; median [min-max], and the share of")
        print("the variant's CPU per request beyond metrics off):")
        cols = " | ".join(f"CPU ms/req, {label}" for label, _, _ in loads)
        print(f"| variant | {cols} | request ms p50, json, 1 client |")
        print(f"|---|{'---:|' * (len(loads) + 1)}")
        for name in METRICS_VARIANTS:
            cells = []
            for label, _, _ in loads:
                xs = cpu[(name, label)]
                med = statistics.median(xs)
                share = (med - statistics.median(cpu[(off, label)])) / med * 100
                cells.append(f"{med:.3f} [{min(xs):.3f}-{max(xs):.3f}] ({share:+.1f}%)")
            lat = statistics.median(p50[name])
            spread = f"[{min(p50[name]):.3f}-{max(p50[name]):.3f}]"
            cells.append(f"{lat:.3f} {spread} ({lat - statistics.median(p50[off]):+.3f})")
            print(f"| {name} | {' | '.join(cells)} |")
    us = recorder_cost()
    print()
    print("the metric writes of one chat request alone (serving.metrics.Recorder, multiprocess")
    print(f"mode, in-process): json {us['json_request']:.1f} us CPU, stream ", end="")
    print(f"{us['stream_request']:.1f} us CPU")


def worker_cost(
    workers: int, rounds: int, n: int, base: int, variants: dict[str, str] = WORKERS
) -> dict[str, float]:
    """CPU per request of the gateway's `variants` (worker class, or listening socket), side by
    side: by default serving.gworker against stock gthread (both on the shared socket)."""
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        start_upstream(stack, tmp, base)
        genv, key = gateway_home(tmp, base)
        servers = {}
        for i, (name, worker) in enumerate(variants.items()):
            port = base + 1 + i
            argv = worker_argv(f"127.0.0.1:{port}", workers, worker)
            proc = spawn(stack, argv, genv, tmp / f"{name}.log")
            servers[name] = (port, proc.pid)
        for port, _ in servers.values():
            wait_http(f"http://127.0.0.1:{port}/api/v1/inference/models")
        loads = (("json, 1 client", False, 1), ("json, 16", False, 16), ("stream, 16", True, 16))
        cpu: dict[tuple[str, str], list[float]] = {}
        for label, stream, conns in loads:
            for port, _ in servers.values():
                load(port, key, stream, 100, conns)  # warm-up
            for _ in range(rounds):
                for name, (port, pid) in servers.items():
                    c0 = tree_cpu(pid)
                    load(port, key, stream, n, conns)
                    cpu.setdefault((name, label), []).append((tree_cpu(pid) - c0) * 1000 / n)
        ours = {label: statistics.median(cpu[("gworker", label)]) for label, _, _ in loads}
        print(f"gateway CPU ms per request ({workers} workers, kept-alive clients; {rounds}")
        print(f"interleaved rounds of {n} requests; median [min-max], and what the variant costs")
        print("beyond gworker as a share of its own request CPU):")
        print(f"| worker | {' | '.join(label for label, _, _ in loads)} |")
        print(f"|---|{'---:|' * len(loads)}")
        for name in variants:
            cells = []
            for label, _, _ in loads:
                xs = cpu[(name, label)]
                med = statistics.median(xs)
                share = (med - ours[label]) / med * 100
                cells.append(f"{med:.3f} [{min(xs):.3f}-{max(xs):.3f}] ({share:+.1f}%)")
            print(f"| {name} | {' | '.join(cells)} |")
    return ours


def engine_cost(rounds: int, n: int, base: int, ours: dict[str, float]) -> None:
    """serving.engines.wire against urllib3, httpcore and httpx (benchmarks/engine_client.py), the
    extra CPU as a share of a gateway request (`ours`: its CPU per request, from worker_cost)."""
    rows = {r["label"]: r for r in engine_client.compare(n * 4, rounds, base + 20)}
    print()
    print("engine client, client CPU ms per request (benchmarks/engine_client.py):")
    print("| client | json | stream | json: extra CPU share of a gateway request | stream |")
    print("|---|---:|---:|---:|---:|")
    for lib in ("wire", "urllib3", "httpcore", "httpx"):
        cells = []
        shares = []
        for kind, stream in (("complete", False), ("stream", True)):
            c = float(rows[f"{lib} {kind}"]["cpu"])
            extra = c - float(rows[f"wire {kind}"]["cpu"])
            cells.append(f"{c:.3f}")
            gateway = ours["stream, 16" if stream else "json, 16"]
            shares.append(f"{extra / (gateway + extra) * 100:+.1f}%")
        print(f"| {lib} | {' | '.join(cells)} | {' | '.join(shares)} |")


if __name__ == "__main__":
    main()
