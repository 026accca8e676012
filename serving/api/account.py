"""/credits, /credits/transactions, /usage: the caller's own account only, newest first."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import current_app, g, request

from serving import db, ledger
from serving.api import bp
from serving.api.openapi import doc, link
from serving.auth import require_auth
from serving.protocol import (
    Credits,
    PageQuery,
    Transaction,
    TransactionList,
    UsageList,
    UsageQuery,
    UsageRecord,
)
from serving.schema import transactions, usage_logs

_TXN_COLS = [c for c in transactions.c if c.name != "account_id"]
_USAGE_COLS = [c for c in usage_logs.c if c.name != "account_id"]


@bp.get("/credits")
@doc("Your credit balance", responses={200: Credits}, errors=(401, 403))
@require_auth
def credits() -> Any:
    with db.read() as conn:
        b = ledger.balance(conn, g.principal.account_id)
    per = int(current_app.config["MICROS_PER_CREDIT"])
    return Credits(balance=ledger.micros_to_credits(b["available_micros"], per), **b).model_dump()


@bp.get("/credits/transactions")
@doc(
    "Credit transactions, newest first",
    query=PageQuery,
    responses={200: TransactionList},
    links={"NextPage": link("get", "/credits/transactions", cursor="$response.body#/next_cursor")},
)
@require_auth
def credit_transactions() -> Any:
    q = PageQuery.model_validate(request.args.to_dict())
    stmt = sa.select(*_TXN_COLS).where(transactions.c.account_id == g.principal.account_id)
    if q.cursor is not None:
        stmt = stmt.where(transactions.c.id < q.cursor)
    stmt = stmt.order_by(transactions.c.id.desc()).limit(q.limit + 1)
    with db.read() as conn:
        rows = conn.execute(stmt).mappings().all()
    page = [Transaction(**r) for r in rows[: q.limit]]
    more = len(rows) > q.limit
    return TransactionList(
        data=page, has_more=more, next_cursor=page[-1].id if more else None
    ).model_dump(mode="json")


@bp.get("/usage")
@doc(
    "Usage log: one row per request, newest first",
    query=UsageQuery,
    responses={200: UsageList},
    links={"NextPage": link("get", "/usage", cursor="$response.body#/next_cursor")},
)
@require_auth
def usage() -> Any:
    q = UsageQuery.model_validate(request.args.to_dict())
    c = usage_logs.c
    stmt = sa.select(*_USAGE_COLS).where(c.account_id == g.principal.account_id)
    if q.cursor is not None:
        stmt = stmt.where(c.seq < q.cursor)
    if q.start is not None:
        stmt = stmt.where(c.created_at >= q.start)
    if q.end is not None:
        stmt = stmt.where(c.created_at < q.end)
    if q.model:
        stmt = stmt.where(sa.or_(c.requested_model == q.model, c.served_model == q.model))
    if q.key_id:
        stmt = stmt.where(c.key_id == q.key_id)
    stmt = stmt.order_by(c.seq.desc()).limit(q.limit + 1)
    with db.read() as conn:
        rows = conn.execute(stmt).mappings().all()
    page = rows[: q.limit]
    more = len(rows) > q.limit
    return UsageList(
        data=[UsageRecord(**r) for r in page],
        has_more=more,
        next_cursor=page[-1]["seq"] if more else None,
    ).model_dump(mode="json")
