"""API keys: `inf_` + 32 random bytes (URL-safe), stored as an HMAC-SHA256 hash + display prefix.

Who may manage which key: a browser session (the dashboard) or the operator's CLI manages every key
of its account. An API key manages only itself and the keys created with it (transitively), and a
key it creates gets at most its own model pool and rate limits (`bounded_by`); widening its own
pool is refused the same way.

`KeyCache` keeps each worker's key lookups in memory for a few seconds; revocation is still seen at
once because every reservation re-checks the key row inside its own UPDATE (see ledger.reserve), and
the non-chat endpoints read the key row fresh.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from serving.errors import ApiError
from serving.schema import accounts, api_keys, utcnow

PREFIX = "inf_"
DISPLAY_CHARS = 12


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    account_id: int
    model_pool: tuple[str, ...]
    optimize_mode: str
    rpm_limit: int | None
    tpm_limit: int | None
    revoked: bool
    account_active: bool
    capture_rate: float = 0.0  # the share of requests captured (serving/traffic.py); 0: off
    compare_rate: float | None = None  # of captured `auto` ones, compared (None: the default)


def generate() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: bytes, raw: str) -> str:
    return hmac.new(secret, raw.encode(), hashlib.sha256).hexdigest()


def hash_secret(secret_key: str) -> bytes:
    return hashlib.sha256(b"inferbase-api-key:" + secret_key.encode()).digest()


_LOOKUP = (
    sa.select(
        api_keys.c.id,
        api_keys.c.account_id,
        api_keys.c.model_pool,
        api_keys.c.optimize_mode,
        api_keys.c.rpm_limit,
        api_keys.c.tpm_limit,
        api_keys.c.revoked_at,
        accounts.c.active,
        api_keys.c.capture_rate,
        api_keys.c.compare_rate,
    )
    .select_from(api_keys.join(accounts, accounts.c.id == api_keys.c.account_id))
    .where(api_keys.c.key_hash == sa.bindparam("h"))
)


def lookup(conn: sa.Connection, key_hash: str) -> KeyInfo | None:
    row = conn.execute(_LOOKUP, {"h": key_hash}).first()
    if row is None:
        return None
    return KeyInfo(
        id=row.id,
        account_id=row.account_id,
        model_pool=tuple(row.model_pool or ()),
        optimize_mode=row.optimize_mode,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        revoked=row.revoked_at is not None,
        account_active=bool(row.active),
        capture_rate=float(row.capture_rate or 0.0),
        compare_rate=row.compare_rate,
    )


class KeyCache:
    """key hash -> (KeyInfo, fetched monotonic time). Thread-safe enough: dict ops are atomic."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[KeyInfo, float]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> KeyInfo | None:
        entry = self._entries.get(key_hash)
        if entry is None or time.monotonic() - entry[1] > self.ttl_s:
            return None
        return entry[0]

    def put(self, key_hash: str, info: KeyInfo) -> None:
        with self._lock:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[key_hash] = (info, time.monotonic())

    def evict_id(self, key_id: str) -> None:
        with self._lock:
            for h, (info, _) in list(self._entries.items()):
                if info.id == key_id:
                    del self._entries[h]


def validate_pool(pool: list[str], known: set[str]) -> list[str]:
    unknown = [m for m in pool if m not in known]
    if unknown:
        raise ApiError(
            400, f"Unknown model id(s) in model_pool: {', '.join(unknown)}.", param="model_pool"
        )
    return list(dict.fromkeys(pool))


def _beyond(what: str, param: str) -> ApiError:
    return ApiError(
        403,
        f"A key created or changed with an API key cannot exceed that key's {what}.",
        param=param,
        code="exceeds_parent_key",
    )


def bound_pool(caller: KeyInfo, pool: list[str], inherit: bool = True) -> list[str]:
    """`pool` within the calling key's pool (an empty pool, all models, only for an unrestricted
    caller): an empty `pool` inherits the caller's (`inherit`, when creating) or is refused (when
    changing); a pool reaching beyond the caller's is a 403."""
    if not caller.model_pool:
        return pool
    if not pool and inherit:
        return list(caller.model_pool)
    if not pool or set(pool) - set(caller.model_pool):
        raise _beyond("model pool", "model_pool")
    return pool


def bounded_by(
    caller: KeyInfo,
    pool: list[str],
    rpm_limit: int | None,
    tpm_limit: int | None,
    default_rpm: int,
    default_tpm: int,
) -> tuple[list[str], int | None, int | None]:
    """A new key's pool and limits when an API key creates it: at most the caller's (unset
    values inherit the caller's), 403 `exceeds_parent_key` otherwise."""
    limits: list[int | None] = []
    for param, asked, own, default in (
        ("rpm_limit", rpm_limit, caller.rpm_limit, default_rpm),
        ("tpm_limit", tpm_limit, caller.tpm_limit, default_tpm),
    ):
        if asked is not None and asked > (own or default):
            raise _beyond("rate limits", param)
        limits.append(own if asked is None else asked)
    return bound_pool(caller, pool), limits[0], limits[1]


def may_manage(conn: sa.Connection, caller: KeyInfo | None, key_id: str) -> None:
    """403 unless the caller is a browser session, the key itself, or an ancestor of the key."""
    if caller is None or caller.id == key_id:
        return
    seen: set[str] = set()
    current: str | None = key_id
    while current is not None and current not in seen:
        seen.add(current)
        current = conn.execute(
            sa.select(api_keys.c.parent_key_id).where(
                api_keys.c.id == current, api_keys.c.account_id == caller.account_id
            )
        ).scalar()
        if current == caller.id:
            return
    raise ApiError(
        403,
        "An API key can manage only itself and the keys created with it; "
        "manage the others in the dashboard.",
        param="key_id",
        code="key_not_manageable",
    )


def create(
    conn: sa.Connection,
    secret: bytes,
    account_id: int,
    name: str,
    model_pool: list[str],
    optimize_mode: str = "balanced",
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    parent_key_id: str | None = None,
    capture_rate: float = 0.0,
    compare_rate: float | None = None,
) -> tuple[dict[str, Any], str]:
    raw = generate()
    values = {
        "id": "key_" + secrets.token_hex(8),
        "account_id": account_id,
        "name": name,
        "prefix": raw[:DISPLAY_CHARS],
        "key_hash": hash_key(secret, raw),
        "model_pool": model_pool,
        "optimize_mode": optimize_mode,
        "rpm_limit": rpm_limit,
        "tpm_limit": tpm_limit,
        "created_at": utcnow(),
        "parent_key_id": parent_key_id,
        "capture_rate": capture_rate,
        "compare_rate": compare_rate,
    }
    conn.execute(api_keys.insert().values(**values))
    return get(conn, account_id, str(values["id"])), raw


def to_public(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "api_key",
        "name": row.name,
        "prefix": row.prefix,
        "model_pool": list(row.model_pool or []),
        "optimize_mode": row.optimize_mode,
        "rpm_limit": row.rpm_limit,
        "tpm_limit": row.tpm_limit,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked": row.revoked_at is not None,
        "revoked_at": row.revoked_at,
        "parent_key_id": row.parent_key_id,
        "capture_rate": float(row.capture_rate or 0.0),
        "compare_rate": row.compare_rate,
    }


def list_for(
    conn: sa.Connection, account_id: int, limit: int | None = None, after: str | None = None
) -> list[dict[str, Any]]:
    """The account's keys, newest first; `limit` of them after the key `after` (a page cursor)."""
    c = api_keys.c
    stmt = sa.select(api_keys).where(c.account_id == account_id)
    if after is not None:
        start = conn.execute(
            sa.select(c.created_at).where(c.id == after, c.account_id == account_id)
        ).scalar()
        if (
            start is None
        ):  # well formed (KeyPageQuery), but no key of this account: as GET /keys/{id}
            raise ApiError(
                404, f"No API key {after} to continue after.", param="cursor", code="key_not_found"
            )
        stmt = stmt.where(
            sa.or_(c.created_at < start, sa.and_(c.created_at == start, c.id > after))
        )
    stmt = stmt.order_by(c.created_at.desc(), c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [to_public(r) for r in conn.execute(stmt)]


def check_room(conn: sa.Connection, account_id: int, max_active: int) -> None:
    """403 when the account already has `max_active` keys that are not revoked (the account row is
    locked first on PostgreSQL, so concurrent creations count one another)."""
    conn.execute(sa.select(accounts.c.id).where(accounts.c.id == account_id).with_for_update())
    active = conn.execute(
        sa.select(sa.func.count())
        .select_from(api_keys)
        .where(api_keys.c.account_id == account_id, api_keys.c.revoked_at.is_(None))
    ).scalar_one()
    if active >= max_active:
        raise ApiError(
            403,
            f"This account already has {max_active} active API keys; revoke one first.",
            code="key_limit_reached",
        )


def get(conn: sa.Connection, account_id: int, key_id: str) -> dict[str, Any]:
    """One key of this account; 404 for another account's key (never reveal it exists)."""
    row = conn.execute(
        sa.select(api_keys).where(api_keys.c.id == key_id, api_keys.c.account_id == account_id)
    ).first()
    if row is None:
        raise ApiError(404, f"No API key {key_id}.", param="key_id", code="key_not_found")
    return to_public(row)


def update(conn: sa.Connection, account_id: int, key_id: str, **changes: Any) -> dict[str, Any]:
    current = get(conn, account_id, key_id)
    if current["revoked"]:
        # the request is well formed; the key's state refuses it (a 409, as OpenAPI documents)
        raise ApiError(409, "A revoked key cannot be changed.", param="key_id", code="key_revoked")
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(**changes))
    return get(conn, account_id, key_id)


def revoke(conn: sa.Connection, account_id: int, key_id: str) -> dict[str, Any]:
    get(conn, account_id, key_id)
    conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return get(conn, account_id, key_id)


def touch(conn: sa.Connection, key_id: str) -> None:
    conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=utcnow()))
