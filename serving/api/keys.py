"""/keys: create (raw key once), list, update, revoke. Only the caller's own account's keys.

A browser session manages every key of the account; an API key only itself and the keys created
with it, and what it creates or changes stays within its own pool and limits (serving.keys)."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, request

from serving import bell, db, keys, traffic
from serving.api import bp, json_body
from serving.api.openapi import doc, link
from serving.auth import require_auth
from serving.protocol import KeyCreate, KeyCreated, KeyList, KeyOut, KeyPageQuery, KeyUpdate


def _known_models() -> set[str]:
    return {m.id for m in current_app.extensions["engines"].models()}


@bp.post("/keys")
@doc(
    "Create an API key (the raw key is returned once). Created with an API key, the new key gets "
    "at most that key's model pool and rate limits (unset: inherited); more is a 403, as is a key "
    "beyond the account's cap of active keys",
    body=KeyCreate,
    responses={201: KeyCreated},
    links={
        "UpdateKey": link("patch", "/keys/{key_id}", key_id="$response.body#/id"),
        "RevokeKey": link("delete", "/keys/{key_id}", key_id="$response.body#/id"),
        "ListKeys": link("get", "/keys"),
        "KeyUsage": link("get", "/usage", key_id="$response.body#/id"),
    },
)
@require_auth
def create_key() -> Any:
    data = KeyCreate.model_validate(json_body())
    pool = keys.validate_pool(data.model_pool, _known_models())
    caller = g.principal.key
    rpm, tpm = data.rpm_limit, data.tpm_limit
    if caller is not None:
        cfg = current_app.config
        pool, rpm, tpm = keys.bounded_by(
            caller, pool, rpm, tpm, int(cfg["DEFAULT_RPM"]), int(cfg["DEFAULT_TPM"])
        )
    with db.write() as conn:
        cap = int(current_app.config["KEYS_MAX_PER_ACCOUNT"])
        keys.check_room(conn, g.principal.account_id, cap)
        row, raw = keys.create(
            conn,
            current_app.extensions["auth"].secret,
            g.principal.account_id,
            data.name,
            pool,
            data.optimize_mode,
            rpm,
            tpm,
            parent_key_id=caller.id if caller is not None else None,
            capture_rate=data.capture_rate,
            compare_rate=data.compare_rate,
        )
    return KeyCreated(**row, key=raw).model_dump(mode="json"), 201


@bp.get("/keys")
@doc(
    "List your API keys (prefixes only), newest first, a page at a time",
    query=KeyPageQuery,
    responses={200: KeyList},
    errors=(400, 401, 403, 404, 429),
    links={"NextPage": link("get", "/keys", cursor="$response.body#/next_cursor")},
)
@require_auth
def list_keys() -> Any:
    q = KeyPageQuery.model_validate(request.args.to_dict())
    with db.read() as conn:
        rows = keys.list_for(conn, g.principal.account_id, q.limit + 1, q.cursor)
    page, more = rows[: q.limit], len(rows) > q.limit
    return KeyList(
        data=[KeyOut(**r) for r in page],
        has_more=more,
        next_cursor=page[-1]["id"] if more else None,
    ).model_dump(mode="json")


@bp.patch("/keys/<key_id>")
@doc(
    "Update an API key's name, model pool, optimization mode or traffic capture. An API key may "
    "update only itself and the keys created with it, within its own model pool (403 otherwise)",
    body=KeyUpdate,
    responses={200: KeyOut},
    errors=(400, 401, 403, 404, 409, 429),
    links={"RevokeKey": link("delete", "/keys/{key_id}", key_id="$response.body#/id")},
)
@require_auth
def update_key(key_id: str) -> Any:
    data = KeyUpdate.model_validate(json_body())
    pool = None if data.model_pool is None else keys.validate_pool(data.model_pool, _known_models())
    caller = g.principal.key
    if caller is not None and pool is not None:
        pool = keys.bound_pool(caller, pool, inherit=False)
    with db.write() as conn:
        keys.get(conn, g.principal.account_id, key_id)  # 404 before 403
        keys.may_manage(conn, caller, key_id)
        row = keys.update(
            conn,
            g.principal.account_id,
            key_id,
            name=data.name,
            model_pool=pool,
            optimize_mode=data.optimize_mode,
            capture_rate=data.capture_rate,
            compare_rate=data.compare_rate,
        )
    current_app.extensions["auth"].cache.evict_id(key_id)
    return KeyOut(**row).model_dump(mode="json")


@bp.delete("/keys/<key_id>")
@doc(
    "Revoke an API key permanently (its captured traffic is deleted). An API key may revoke only "
    "itself and the keys created with it (403 otherwise); a browser session any key of the account",
    responses={200: KeyOut},
    errors=(401, 403, 404, 429),
)
@require_auth
def revoke_key(key_id: str) -> Any:
    with db.write() as conn:
        keys.get(conn, g.principal.account_id, key_id)  # 404 before 403
        keys.may_manage(conn, g.principal.key, key_id)
        row = keys.revoke(conn, g.principal.account_id, key_id)
        traffic.delete_for(conn, g.principal.account_id, key_id=key_id)
    current_app.extensions["auth"].cache.evict_id(key_id)
    bell.ring(current_app, g.principal.account_id, reauth=True)  # its sockets, on every host
    return KeyOut(**row).model_dump(mode="json")
