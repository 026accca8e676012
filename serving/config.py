"""Gateway configuration: flat, typed defaults overridden by ``INFERBASE_*`` environment variables.

`load_config(app, test_config)` is the only place configuration is assembled. Every key below can
be set from the environment as ``INFERBASE_<KEY>`` (values parse as JSON when they look like it,
so ``INFERBASE_DEFAULT_RPM=120`` is an int). A test dict, when given, wins over both.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, Any] = {
    "HOME": str(REPO_ROOT / "instance"),
    "DATABASE_URL": None,  # default: sqlite:///<HOME>/inferbase.db
    "REDIS_URL": None,  # rate-limit storage and live-event bus shared by every worker and host
    "REDIS_PREFIX": "inferbase",  # Redis keys and channels start with this (one per deployment)
    "RATELIMIT_STORAGE": "auto",  # auto (redis if REDIS_URL, else database) | file | database | URI
    "CATALOG": str(REPO_ROOT / "data" / "catalog.local.yaml"),
    "ENGINES_FACTORY": "serving.engines:build_engines",  # "module:callable", called with the app
    "SECRET_KEY": None,  # generated and persisted under HOME when unset
    "MICROS_PER_CREDIT": 1_000_000,
    "SIGNUP_CREDITS": 0,
    "DEFAULT_RPM": 600,  # per key, requests per minute
    "DEFAULT_TPM": 1_000_000,  # per key, tokens per minute
    "KEYS_MAX_PER_ACCOUNT": 100,  # active (not revoked) API keys per account
    "MAX_OUTPUT_TOKENS_RESERVE": 4096,  # reserve this many output tokens when max_tokens is absent
    "RESERVATION_TTL_S": 3600,  # a reservation older than this (crashed worker) is released
    "SWEEP_INTERVAL_S": 60,
    "KEY_CACHE_TTL_S": 5.0,  # key routing config cache; revocation is checked on every reservation
    "SESSION_TTL_S": 7 * 24 * 3600,
    "LOGIN_LIMIT_PER_ACCOUNT": "10 per 5 minutes",  # failed logins for one email (`limits` syntax)
    "LOGIN_LIMIT_PER_CLIENT": "30 per minute",  # login attempts from one client address
    "PASSWORD_HASH_CONCURRENCY": 1,  # argon2 hashes at once per worker process (each uses 4 lanes)
    "PASSWORD_HASH_WAIT_S": 5.0,  # a login waiting longer than this for a slot gets a 503
    "SESSION_COOKIE_SECURE": False,  # always Secure; otherwise Secure when the request was HTTPS
    "CORS_ORIGINS": [],  # browser origins allowed to call /api/v1/inference with an API key
    "PROXY_HOPS": 0,  # trusted reverse proxies in front: their X-Forwarded-For/-Proto/-Host count
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "EVENTS_MAX_PER_ACCOUNT": 8,  # live-event WebSockets per account, per worker process
    "EVENTS_MAX_TOTAL": 256,  # live-event WebSockets per worker process (each holds a thread)
    "EVENTS_BUS": "auto",  # auto (redis if REDIS_URL, else poll) | poll | redis (dashboard/bus.py)
    "EVENTS_POLL_S": 0.5,  # without the Redis bus: how often each worker polls for new events
    "EVENTS_SAFETY_POLL_S": 5.0,  # with the Redis bus: the poll that catches a lost wake-up
    "DB_POOL_SIZE": 16,
    # learning from traffic (serving/traffic.py, serving/compare.py, docs/traffic.md)
    "TRAFFIC_RETENTION_DAYS": 30,  # captures, pairs and feedback are deleted after this many days
    "EVAL_ACCOUNT": None,  # email of the operator's account that pays for comparisons; None: off
    "COMPARE_RATE": 0.1,  # share of captured `auto` requests compared, unless the key sets its own
    "COMPARE_QUEUE_MAX": 64,  # comparisons waiting per worker process; more are dropped
    "METRICS": True,  # Prometheus metrics (serving/metrics.py); GET /metrics needs METRICS_TOKEN
    "METRICS_TOKEN": None,  # bearer token for GET /metrics; unset: /metrics is a 404
}


def _secret_key(home: Path) -> str:
    path = home / "secret_key"
    if path.exists():
        return path.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    logger.info("generated a new secret key at %s", path)
    return key


def load_config(app: Flask, test_config: dict[str, Any] | None) -> None:
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("INFERBASE")
    if test_config:
        app.config.update(test_config)
    cfg = app.config
    home = Path(cfg["HOME"])
    if not cfg.get("DATABASE_URL"):
        home.mkdir(parents=True, exist_ok=True)
        cfg["DATABASE_URL"] = f"sqlite:///{home / 'inferbase.db'}"
    if not cfg.get("SECRET_KEY"):
        try:
            cfg["SECRET_KEY"] = _secret_key(home)
        except FileExistsError:  # another worker wrote it first
            cfg["SECRET_KEY"] = _secret_key(home)
    for key in ("DEFAULT_RPM", "DEFAULT_TPM", "MAX_OUTPUT_TOKENS_RESERVE", "MICROS_PER_CREDIT"):
        cfg[key] = int(cfg[key])
    for key in (
        "RESERVATION_TTL_S", "SWEEP_INTERVAL_S", "KEY_CACHE_TTL_S", "TRAFFIC_RETENTION_DAYS",
        "COMPARE_RATE",
    ):  # fmt: skip
        cfg[key] = float(cfg[key])


def trust_proxies(app: Flask) -> None:
    """Behind `PROXY_HOPS` reverse proxies, take the client address, scheme and host from their
    X-Forwarded-* headers (werkzeug's ProxyFix, outermost): the login throttle then counts the
    real client and the session cookie is Secure when the client used HTTPS. Never set it
    without a proxy that overwrites those headers: a client could claim any address."""
    hops = int(app.config.get("PROXY_HOPS") or 0)
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )


def public_config(app: Flask) -> dict[str, Any]:
    """The configuration snapshot that is safe to log (no secrets, no credentials in URLs)."""
    hidden = {"SECRET_KEY", "METRICS_TOKEN"}
    out = {k: app.config.get(k) for k in DEFAULTS if k not in hidden}
    for k in ("DATABASE_URL", "REDIS_URL"):
        if out.get(k) and "@" in str(out[k]):
            scheme, _, rest = str(out[k]).partition("://")
            out[k] = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return out
