"""Per-key rate limits (requests and tokens per minute) with the `limits` library.

Storage is shared by every worker: Redis when ``INFERBASE_REDIS_URL`` is set, otherwise the
gateway's own database through `SQLStorage` (a `limits` storage over one upsert per hit).
"""

from __future__ import annotations

import math
import time
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from limits import RateLimitItemPerMinute
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from serving import db
from serving.errors import ApiError
from serving.keys import KeyInfo
from serving.schema import rate_limits

_INCR = sa.text(
    "INSERT INTO rate_limits (key, count, expires_at) VALUES (:k, :a, :exp) "
    "ON CONFLICT (key) DO UPDATE SET "
    "count = CASE WHEN rate_limits.expires_at <= :now THEN :a ELSE rate_limits.count + :a END, "
    "expires_at = CASE WHEN rate_limits.expires_at <= :now THEN :exp "
    "ELSE rate_limits.expires_at END "
    "RETURNING count"
)


class SQLStorage(Storage):
    """Fixed-window counters in the `rate_limits` table (SQLite >= 3.35 or PostgreSQL)."""

    STORAGE_SCHEME = ["inferbase+sql"]

    def __init__(self, engine: sa.Engine, **options: Any) -> None:
        super().__init__(None, **options)
        self.engine = engine

    @property
    def base_exceptions(self) -> type[Exception]:
        return sa.exc.SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with db.write(self.engine) as conn:
            return int(
                conn.execute(
                    _INCR, {"k": key, "a": amount, "exp": now + expiry, "now": now}
                ).scalar_one()
            )

    def _row(self, key: str) -> tuple[int, float] | None:
        with db.read(self.engine) as conn:
            row = conn.execute(
                sa.select(rate_limits.c.count, rate_limits.c.expires_at).where(
                    rate_limits.c.key == key
                )
            ).first()
        if row is None or row.expires_at <= time.time():
            return None
        return int(row.count), float(row.expires_at)

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1] if row else time.time()

    def check(self) -> bool:
        with db.read(self.engine) as conn:
            conn.execute(sa.text("SELECT 1"))
        return True

    def reset(self) -> int | None:
        with db.write(self.engine) as conn:
            return conn.execute(rate_limits.delete()).rowcount

    def clear(self, key: str) -> None:
        with db.write(self.engine) as conn:
            conn.execute(rate_limits.delete().where(rate_limits.c.key == key))

    def purge_expired(self) -> int:
        with db.write(self.engine) as conn:
            return conn.execute(
                rate_limits.delete().where(rate_limits.c.expires_at < time.time())
            ).rowcount


class RateLimits:
    def __init__(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        self.storage: Storage = (
            storage_from_string(url) if url else SQLStorage(app.extensions["db"])
        )
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.default_rpm = int(app.config["DEFAULT_RPM"])
        self.default_tpm = int(app.config["DEFAULT_TPM"])
        self._items: dict[tuple[str, int], RateLimitItemPerMinute] = {}

    def _item(self, kind: str, amount: int) -> RateLimitItemPerMinute:
        item = self._items.get((kind, amount))
        if item is None:
            item = self._items[(kind, amount)] = RateLimitItemPerMinute(amount, namespace=kind)
        return item

    def _refuse(self, item: RateLimitItemPerMinute, key_id: str, what: str) -> ApiError:
        reset = self.limiter.get_window_stats(item, key_id).reset_time
        retry = max(1, math.ceil(reset - time.time()))
        return ApiError(
            429,
            f"Rate limit reached: {item.amount} {what} per minute for this key. "
            f"Retry in {retry} s.",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry)},
        )

    def check_request(self, key: KeyInfo) -> None:
        """Count one request against RPM and check the TPM window still has room (429 if not)."""
        rpm = self._item("rpm", key.rpm_limit or self.default_rpm)
        if not self.limiter.hit(rpm, key.id):
            raise self._refuse(rpm, key.id, "requests")
        tpm = self._item("tpm", key.tpm_limit or self.default_tpm)
        if not self.limiter.test(tpm, key.id):
            raise self._refuse(tpm, key.id, "tokens")

    def add_tokens(self, key: KeyInfo, tokens: int) -> None:
        if tokens > 0:
            self.limiter.hit(
                self._item("tpm", key.tpm_limit or self.default_tpm), key.id, cost=tokens
            )


def get() -> RateLimits:
    return current_app.extensions["ratelimits"]


def init_app(app: Flask) -> None:
    app.extensions["ratelimits"] = RateLimits(app)
