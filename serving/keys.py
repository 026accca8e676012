"""API keys: `inf_` + 32 random bytes (URL-safe), stored as an HMAC-SHA256 hash + display prefix.

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


def create(
    conn: sa.Connection,
    secret: bytes,
    account_id: int,
    name: str,
    model_pool: list[str],
    optimize_mode: str = "balanced",
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
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
    }


def list_for(conn: sa.Connection, account_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(api_keys)
        .where(api_keys.c.account_id == account_id)
        .order_by(api_keys.c.created_at.desc(), api_keys.c.id)
    )
    return [to_public(r) for r in rows]


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
        raise ApiError(400, "A revoked key cannot be changed.", code="key_revoked")
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
