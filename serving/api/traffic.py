"""Learning from traffic: `POST /api/v1/inference/feedback` and `/api/v1/traffic` (pairs, votes,
verdicts, NDJSON export). The caller's own account only; another account's request or pair is a
404, never a hint that it exists. This is the wall between the gateway and the evals harness,
which reaches it over HTTP only (contract: docs/traffic.md)."""

from __future__ import annotations

from typing import Any

from flask import Response, g, request

from serving import db, traffic
from serving.api import bp, json_body, traffic_bp
from serving.api.openapi import doc
from serving.auth import require_auth
from serving.errors import ApiError
from serving.protocol import (
    ExportQuery,
    FeedbackCreate,
    FeedbackOut,
    PairList,
    PairOut,
    PairQuery,
    VerdictCreate,
    VerdictOut,
    VoteCreate,
    VoteOut,
)


@bp.post("/feedback")
@doc(
    "Rate a completion of your account by its X-Request-Id: 1 (good) or -1 (bad), with an "
    "optional comment. Feeds the router's training data (docs/traffic.md)",
    body=FeedbackCreate,
    responses={201: FeedbackOut},
    errors=(400, 401, 403, 404, 429),
)
@require_auth
def create_feedback() -> Any:
    data = FeedbackCreate.model_validate(json_body())
    with db.write() as conn:
        rec = traffic.add_feedback(
            conn, g.principal.account_id, data.request_id, data.rating, data.comment
        )
    if rec is None:
        raise ApiError(
            404,
            f"No completion {data.request_id} of this account.",
            param="request_id",
            code="request_not_found",
        )
    return FeedbackOut(**rec).model_dump(mode="json"), 201


@traffic_bp.get("/pairs")
@doc(
    "Side-by-side pairs made from your captured `auto` traffic, oldest first, a page at a time",
    query=PairQuery,
    responses={200: PairList},
)
@require_auth
def list_pairs() -> Any:
    q = PairQuery.model_validate(request.args.to_dict())
    with db.read() as conn:
        page, nxt = traffic.list_pairs(
            conn,
            g.principal.account_id,
            q.limit,
            int(q.cursor) if q.cursor else None,
            q.unjudged_by,
            q.unvoted,
        )
    return PairList(
        data=[PairOut(**p) for p in page], next_cursor=None if nxt is None else str(nxt)
    ).model_dump(mode="json")


def _own_pair(conn: Any, pair_id: str) -> None:
    if not traffic.own_pair(conn, g.principal.account_id, pair_id):
        raise ApiError(404, f"No pair {pair_id}.", param="pair_id", code="pair_not_found")


@traffic_bp.post("/pairs/<pair_id>/verdicts")
@doc(
    "Record a judge model's verdict on a pair (which answer is better: a, b or tie)",
    body=VerdictCreate,
    responses={201: VerdictOut},
    errors=(400, 401, 403, 404, 429),
)
@require_auth
def add_verdict(pair_id: str) -> Any:
    data = VerdictCreate.model_validate(json_body())
    with db.write() as conn:
        _own_pair(conn, pair_id)
        rec = traffic.add_verdict(conn, pair_id, data.judge, data.winner, data.detail)
    return VerdictOut(**rec).model_dump(mode="json"), 201


@traffic_bp.post("/pairs/<pair_id>/votes")
@doc(
    "Record a person's vote on a pair (a, b or tie), as the dashboard's compare page does",
    body=VoteCreate,
    responses={201: VoteOut},
    errors=(400, 401, 403, 404, 429),
)
@require_auth
def add_vote(pair_id: str) -> Any:
    data = VoteCreate.model_validate(json_body())
    with db.write() as conn:
        _own_pair(conn, pair_id)
        rec = traffic.add_vote(conn, pair_id, data.winner, "human")
    return VoteOut(**rec).model_dump(mode="json"), 201


@traffic_bp.get("/export")
@doc(
    "Your pairs (with votes and verdicts) and feedback as NDJSON (application/x-ndjson), one "
    'record a line with its "kind" ("pair" or "feedback"), oldest first',
    query=ExportQuery,
    responses={200: None},
)
@require_auth
def export() -> Any:
    q = ExportQuery.model_validate(request.args.to_dict())
    lines = traffic.export_lines(db.get_engine(), g.principal.account_id, q.since)
    return Response(lines, mimetype="application/x-ndjson")
