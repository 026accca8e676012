"""Per-key rate limits (requests and tokens per minute) with the `limits` library.

Storage is shared by every worker (``INFERBASE_RATELIMIT_STORAGE``): ``auto`` (default) is Redis
when ``INFERBASE_REDIS_URL`` is set, else ``database``, the gateway's own database (so shared by
every host that shares it: on PostgreSQL the default was once ``file``, and two hosts each allowed
a key its full limit); ``file`` is a SQLite file under HOME shared by the workers of this host
only; anything else is a `limits` storage URI (a Redis URI's keys start with
``INFERBASE_REDIS_PREFIX``, so several gateways or test runs can share one Redis).

On plain Redis (the storage several gateway hosts share), admitting a request is one Lua script
(`RedisCounters`) over the `limits` library's own keys: count the request against RPM, check the
token window still has room, count the request's worst-case tokens; and giving tokens back never
takes a window below zero. The library's own calls (`hit`, `test`, `hit`) are three round trips,
and between the token check and the token count every other worker on every host could pass the
same check: 32 simultaneous admissions of 60 tokens on a `tpm_limit` of 100 let 6 through, not 2.

With the counters in the gateway's own database (``database``, the default without Redis), the chat
path does not pay for separate transactions: the request's RPM hit and TPM check run inside the
reservation's transaction and its tokens are counted inside the settlement's (`Fused`, run by the
ledger on either database), with the same keys, windows and rows as the `limits` storage, so the
two paths see the same counts. The profile of the gateway benchmark had
the four write transactions of a request (RPM hit, reserve, settle, TPM hit) at about a fifth of
its CPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from limits import RateLimitItem, RateLimitItemPerMinute, parse
from limits.storage import RedisClusterStorage, RedisStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from serving import db, fastsql
from serving.errors import ApiError
from serving.keys import KeyInfo
from serving.schema import rate_limits

_INCR = (
    "INSERT INTO rate_limits (key, count, expires_at) VALUES (:k, :a, :exp) "
    "ON CONFLICT (key) DO UPDATE SET "
    "count = CASE WHEN rate_limits.expires_at <= :now THEN :a ELSE rate_limits.count + :a END, "
    "expires_at = CASE WHEN rate_limits.expires_at <= :now THEN :exp "
    "ELSE rate_limits.expires_at END "
    "RETURNING count, expires_at"
)
_GET = "SELECT count, expires_at FROM rate_limits WHERE key = :k AND expires_at > :now"
# a settled request gives back what it reserved beyond what it used (never below zero; a window
# that has ended since is left alone: the new one never held the reservation)
_GIVE_BACK = (
    "UPDATE rate_limits SET count = CASE WHEN count > :a THEN count - :a ELSE 0 END "
    "WHERE key = :k AND expires_at > :now"
)


class SQLStorage(Storage):
    """Fixed-window counters in a `rate_limits` table (SQLite >= 3.35 or PostgreSQL): one upsert
    per hit on the raw cursor. Used over the gateway's database, or over a small SQLite file of
    its own (`file_engine`) that every worker on the host shares."""

    STORAGE_SCHEME = ["inferbase+sql"]

    def __init__(self, engine: sa.Engine, **options: Any) -> None:
        super().__init__(None, **options)
        self.engine = engine
        self.tx = fastsql.for_engine(engine)

    @property
    def base_exceptions(self) -> type[Exception]:
        return sa.exc.SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        p = {"k": key, "a": amount, "exp": now + expiry, "now": now}
        return self.tx.atomic(lambda cur: int(cur.execute(self.tx.sql(_INCR), p).fetchone()[0]))

    def _row(self, key: str) -> tuple[int, float] | None:
        with self.tx.read() as cur:
            cur.execute(self.tx.sql(_GET), {"k": key, "now": time.time()})
            row = cur.fetchone()
        return (int(row[0]), float(row[1])) if row else None

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1] if row else time.time()

    def check(self) -> bool:
        with self.tx.read() as cur:
            cur.execute("SELECT 1")
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


def _retry_after(expires_at: float) -> int:
    return max(1, math.ceil(expires_at - time.time()))


def _limited(amount: int, what: str, retry: int) -> ApiError:
    return ApiError(
        429,
        f"Rate limit reached: {amount} {what} per minute for this key. Retry in {retry} s.",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry)},
    )


@dataclass(frozen=True, slots=True)
class Fused:
    """One key's counters, updated by the ledger inside its own transactions. `reserved`: the
    request's worst-case tokens, counted against TPM when it is admitted and corrected to what it
    used when it settles (as the ledger does for credits), so concurrent requests cannot all pass
    a window that only their finished predecessors filled. A request is admitted while the window
    holds less than the limit, so a minute's tokens stay within the limit plus one request."""

    rpm_key: str
    rpm_limit: int
    tpm_key: str
    tpm_limit: int
    expiry: int
    reserved: int = 0

    def check(self, tx: fastsql.TxExecutor, cur: Any) -> None:
        """Count the request (RPM) and check the token window still has room; 429 otherwise
        (raised inside the transaction, so it rolls back with nothing held)."""
        now = time.time()
        p = {"k": self.rpm_key, "a": 1, "exp": now + self.expiry, "now": now}
        cur.execute(tx.sql(_INCR), p)
        count, expires_at = cur.fetchone()
        if count > self.rpm_limit:
            raise _limited(self.rpm_limit, "requests", _retry_after(float(expires_at)))
        # the RPM upsert above holds the key's row until this transaction ends (PostgreSQL), so
        # a key's admissions on every host take turns and each sees the tokens counted before it
        cur.execute(tx.sql(_GET), {"k": self.tpm_key, "now": now})
        row = cur.fetchone()
        if row is not None and row[0] >= self.tpm_limit:
            raise _limited(self.tpm_limit, "tokens", _retry_after(float(row[1])))
        if self.reserved > 0:
            p = {"k": self.tpm_key, "a": self.reserved, "exp": now + self.expiry, "now": now}
            cur.execute(tx.sql(_INCR), p)
            cur.fetchone()

    def add_tokens(self, tx: fastsql.TxExecutor, cur: Any, tokens: int) -> None:
        """Correct the reservation to the `tokens` the request used."""
        delta = tokens - self.reserved
        now = time.time()
        if delta > 0:
            p = {"k": self.tpm_key, "a": delta, "exp": now + self.expiry, "now": now}
            cur.execute(tx.sql(_INCR), p)
            cur.fetchone()
        elif delta < 0:
            cur.execute(tx.sql(_GIVE_BACK), {"k": self.tpm_key, "a": -delta, "now": now})


class RedisCounters:
    """The request's admission and its token give-back as single Lua scripts on a `RedisStorage`,
    on the same keys (prefixed by the storage) and with the same fixed windows as the `limits`
    library, so `get_window_stats` and the library's own `hit` still see the same counts. Hand
    written because `limits` offers no atomic "count if the window still has room" (its `hit`
    with a cost refuses a request whose worst case does not fit whole, which is a different
    limit) and no floor for a negative increment. Not for Redis Cluster: the two keys of a
    request live in different hash slots."""

    # KEYS: rpm, tpm; ARGV: rpm limit, tpm limit, reserved tokens, window seconds.
    # -> {0, 0} admitted; {1, ms} over RPM; {2, ms} over TPM (ms: until the window ends).
    # A refused request is not counted (as when the counters are in the database).
    ADMIT = """
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('expire', KEYS[1], ARGV[4]) end
if n > tonumber(ARGV[1]) then
  redis.call('decr', KEYS[1])
  return {1, redis.call('pttl', KEYS[1])}
end
local t = tonumber(redis.call('get', KEYS[2]) or '0')
if t >= tonumber(ARGV[2]) then
  redis.call('decr', KEYS[1])
  return {2, redis.call('pttl', KEYS[2])}
end
local r = tonumber(ARGV[3])
if r > 0 then
  if redis.call('incrby', KEYS[2], r) == r then redis.call('expire', KEYS[2], ARGV[4]) end
end
return {0, 0}
"""
    # KEYS: tpm; ARGV: tokens to give back (never below zero; an ended window is left alone)
    GIVE_BACK = """
local t = tonumber(redis.call('get', KEYS[1]) or '0')
local a = tonumber(ARGV[1])
if t > 0 then redis.call('decrby', KEYS[1], math.min(t, a)) end
return t
"""

    def __init__(self, storage: RedisStorage) -> None:
        self.storage = storage
        client = storage.get_connection()
        self._admit = client.register_script(self.ADMIT.encode())
        self._give_back = client.register_script(self.GIVE_BACK.encode())

    @staticmethod
    def usable(storage: Storage) -> bool:
        return isinstance(storage, RedisStorage) and not isinstance(storage, RedisClusterStorage)

    def admit(
        self, rpm: RateLimitItemPerMinute, tpm: RateLimitItemPerMinute, key_id: str, reserved: int
    ) -> None:
        keys = [self.storage.prefixed_key(rpm.key_for(key_id)),
                self.storage.prefixed_key(tpm.key_for(key_id))]  # fmt: skip
        args = [rpm.amount, tpm.amount, reserved, rpm.get_expiry()]
        over, ms = (int(v) for v in self._admit(keys, args))
        if over:
            item, what = (rpm, "requests") if over == 1 else (tpm, "tokens")
            raise _limited(item.amount, what, max(1, math.ceil(max(ms, 0) / 1000)))

    def give_back(self, tpm: RateLimitItemPerMinute, key_id: str, tokens: int) -> None:
        self._give_back([self.storage.prefixed_key(tpm.key_for(key_id))], [tokens])


def file_engine(home: Path) -> sa.Engine:
    """A SQLite file under HOME for the counters alone (no fsync: a crash may lose counts)."""
    home.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(f"sqlite:///{home / 'ratelimits.db'}", 16, synchronous="OFF")
    # BEGIN IMMEDIATE: gunicorn's workers all create it at boot; in a deferred transaction the
    # check (a read) then the CREATE (a write) failed at once with "database is locked" when
    # another worker wrote in between (7 of 60 workers started together, here)
    with db.write(engine) as conn:
        rate_limits.create(conn, checkfirst=True)
    return engine


def make_storage(app: Flask) -> Storage:
    choice = str(app.config.get("RATELIMIT_STORAGE") or "auto")
    url = app.config.get("REDIS_URL")
    if choice == "auto":  # shared by every worker and every host that shares the database
        choice = url if url else "database"
    if choice == "file":
        return SQLStorage(file_engine(Path(app.config["HOME"])))
    if choice == "database":
        return SQLStorage(app.extensions["db"])
    options: dict[str, Any] = {}
    if choice.startswith(("redis", "rediss", "valkey")):
        options["key_prefix"] = f"{app.config.get('REDIS_PREFIX') or 'inferbase'}:limits"
    storage = storage_from_string(choice, **options)
    if not isinstance(storage, Storage):
        raise ValueError(f"INFERBASE_RATELIMIT_STORAGE={choice!r} names an async storage")
    return storage


class RateLimits:
    def __init__(self, app: Flask) -> None:
        self.storage = make_storage(app)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.default_rpm = int(app.config["DEFAULT_RPM"])
        self.default_tpm = int(app.config["DEFAULT_TPM"])
        self._items: dict[tuple[str, int], RateLimitItemPerMinute] = {}
        # counters in the gateway's own database: the ledger updates them in its transactions
        self.fusable = (
            isinstance(self.storage, SQLStorage) and self.storage.engine is app.extensions["db"]
        )
        # counters on Redis: each admission is one atomic script (exact across hosts)
        self.redis = (
            RedisCounters(self.storage)  # type: ignore[arg-type]
            if RedisCounters.usable(self.storage)
            else None
        )

    def fused(self, key: KeyInfo | None) -> Fused | None:
        """The key's counters for the ledger to update in its own transactions, or None when the
        storage is elsewhere (then call `check_request` and `add_tokens`)."""
        if key is None or not self.fusable:
            return None
        rpm = self._item("rpm", key.rpm_limit or self.default_rpm)
        tpm = self._item("tpm", key.tpm_limit or self.default_tpm)
        return Fused(
            rpm.key_for(key.id), rpm.amount, tpm.key_for(key.id), tpm.amount, rpm.get_expiry()
        )

    def _item(self, kind: str, amount: int) -> RateLimitItemPerMinute:
        item = self._items.get((kind, amount))
        if item is None:
            item = self._items[(kind, amount)] = RateLimitItemPerMinute(amount, namespace=kind)
        return item

    def _refuse(self, item: RateLimitItemPerMinute, key_id: str, what: str) -> ApiError:
        reset = self.limiter.get_window_stats(item, key_id).reset_time
        return _limited(item.amount, what, _retry_after(reset))

    def check_request(self, key: KeyInfo, reserved: int = 0) -> None:
        """Count one request against RPM, check the TPM window still has room (429 if not) and
        count the request's worst-case tokens (`reserved`) in it until `add_tokens` corrects
        them."""
        rpm = self._item("rpm", key.rpm_limit or self.default_rpm)
        tpm = self._item("tpm", key.tpm_limit or self.default_tpm)
        if self.redis is not None:
            self.redis.admit(rpm, tpm, key.id, reserved)
            return
        if not self.limiter.hit(rpm, key.id):
            raise self._refuse(rpm, key.id, "requests")
        if not self.limiter.test(tpm, key.id):
            raise self._refuse(tpm, key.id, "tokens")
        if reserved > 0:
            self.limiter.hit(tpm, key.id, cost=reserved)

    def add_tokens(self, key: KeyInfo, tokens: int, reserved: int = 0) -> None:
        """Correct a request's reserved tokens to the `tokens` it used."""
        tpm = self._item("tpm", key.tpm_limit or self.default_tpm)
        delta = tokens - reserved
        if delta > 0:
            self.limiter.hit(tpm, key.id, cost=delta)
        elif delta < 0 and self.redis is not None:
            self.redis.give_back(tpm, key.id, -delta)
        elif delta < 0:
            k = tpm.key_for(key.id)
            have = self.storage.get(k)
            if have > 0:  # the window that holds the reservation is still open
                self.storage.incr(k, tpm.get_expiry(), -min(-delta, have))


class LoginThrottle:
    """Login attempts, counted in the rate limits' storage (so shared by every worker and host) and
    checked before any password is hashed: every attempt from one client address counts against
    ``LOGIN_LIMIT_PER_CLIENT``, and failed attempts for one email against
    ``LOGIN_LIMIT_PER_ACCOUNT`` (a success clears them). Over either: 429 with Retry-After."""

    def __init__(self, app: Flask, storage: Storage) -> None:
        self.limiter = FixedWindowRateLimiter(storage)
        self.per_client: RateLimitItem = parse(str(app.config["LOGIN_LIMIT_PER_CLIENT"]))
        self.per_account: RateLimitItem = parse(str(app.config["LOGIN_LIMIT_PER_ACCOUNT"]))
        self.per_client.namespace = self.per_account.namespace = "login"

    def _refuse(self, item: RateLimitItem, ident: str, whose: str) -> ApiError:
        retry = _retry_after(self.limiter.get_window_stats(item, ident).reset_time)
        return ApiError(
            429,
            f"Too many login attempts {whose}. Retry in {retry} s.",
            code="too_many_login_attempts",
            headers={"Retry-After": str(retry)},
        )

    def attempt(self, email: str, client: str) -> None:
        """Count one attempt from `client` for `email`; 429 if either is over its limit."""
        if not self.limiter.hit(self.per_client, "client", client):
            raise self._refuse(self.per_client, "client", "from this address")
        if not self.limiter.test(self.per_account, "account", email):
            raise self._refuse(self.per_account, "account", "for this account")

    def failed(self, email: str) -> None:
        self.limiter.hit(self.per_account, "account", email)

    def succeeded(self, email: str) -> None:
        self.limiter.clear(self.per_account, "account", email)


def get() -> RateLimits:
    return current_app.extensions["ratelimits"]


def login_throttle() -> LoginThrottle:
    return current_app.extensions["login_throttle"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    limits = app.extensions["ratelimits"] = RateLimits(app)
    # counters in the gateway's SQLite database: a login flood's writes would queue with the
    # ledger's for its write lock, so logins count in the host's counter file instead (SQLite
    # serves one host either way)
    storage = limits.storage
    if limits.fusable and app.extensions["db"].dialect.name == "sqlite":
        storage = SQLStorage(file_engine(Path(app.config["HOME"])))
    app.extensions["login_throttle"] = LoginThrottle(app, storage)
