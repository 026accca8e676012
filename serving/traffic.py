"""Learning from the gateway's own traffic (issue #15): opt-in capture, feedback, pairs, export.

- **Capture** is off unless a key opts in (`api_keys.capture_rate`, the share of its requests
  sampled). A sampled request's messages, routing decision and answer (a stream's assembled text)
  are written by the ledger in the settlement's own transaction (`capture_row` gives the row's
  parameters; `serving.ledger` the statement), so capture adds one INSERT to a transaction the
  request pays for anyway and nothing at all when off. Only successful requests are stored.
- **Retention**: every traffic row (captures, pairs with their votes and verdicts, feedback) is
  deleted `TRAFFIC_RETENTION_DAYS` after it was made (`sweep`, run with the reservation sweep),
  and at once when its key is revoked or its account deactivated (`delete_for`).
- **Records**: `pair_record` and `feedback_record` are the JSON shapes of the traffic API (the
  contract with the evals harness, `docs/traffic.md`); `export_lines` yields them oldest first.

Nothing here logs a prompt or an answer: log lines name request ids, keys and models only.
"""

from __future__ import annotations

import heapq
import logging
import random
import secrets
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from serving import db
from serving.schema import captures, feedback, pair_verdicts, pair_votes, pairs, usage_logs, utcnow

logger = logging.getLogger(__name__)

WINNERS = ("a", "b", "tie")
PAGE = 200  # rows per query while exporting


def sampled(rate: float) -> bool:
    """Whether this request is in the sampled share `rate` (0: never, 1: always)."""
    return rate >= 1.0 or (rate > 0.0 and random.random() < rate)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def capture_row(
    request_id: str,
    key_id: str | None,
    requested_model: str,
    served_model: str,
    routing: dict[str, Any] | None,
    messages: list[Any],
    answer: str,
) -> dict[str, Any]:
    """A captured request's row, as the ledger's `c_` statement parameters."""
    return {
        "c_id": request_id,
        "c_key_id": key_id,
        "c_requested": requested_model,
        "c_served": served_model,
        "c_task": routing.get("task") if routing else None,
        "c_routing": _json(routing),
        "c_messages": orjson.dumps(messages).decode(),
        "c_answer": answer,
    }


def message_text(message: dict[str, Any] | None) -> str:
    """An answer's text: the message content, or the whole message as JSON (tool calls)."""
    if not message:
        return ""
    content = message.get("content")
    if isinstance(content, str) and not message.get("tool_calls"):
        return content
    return orjson.dumps(message).decode()


# ---- deletion and retention ----------------------------------------------------------------


def _delete_pairs(conn: sa.Connection, where: Any) -> int:
    ids = sa.select(pairs.c.id).where(where).scalar_subquery()
    conn.execute(pair_votes.delete().where(pair_votes.c.pair_id.in_(ids)))
    conn.execute(pair_verdicts.delete().where(pair_verdicts.c.pair_id.in_(ids)))
    return int(conn.execute(pairs.delete().where(where)).rowcount)


def delete_for(conn: sa.Connection, account_id: int, key_id: str | None = None) -> int:
    """Delete the traffic of a key (`key_id`) or of a whole account: captures, pairs (votes and
    verdicts with them) and feedback. Returns the number of rows deleted (votes and verdicts not
    counted)."""
    n = 0
    for table in (captures, pairs, feedback):
        where = table.c.account_id == account_id
        if key_id is not None:
            where = sa.and_(where, table.c.key_id == key_id)
        if table is pairs:
            n += _delete_pairs(conn, where)
        else:
            n += int(conn.execute(table.delete().where(where)).rowcount)
    if n:
        logger.info("traffic deleted account=%s key=%s rows=%d", account_id, key_id, n)
    return n


def sweep(engine: sa.Engine, retention_days: float, now: datetime | None = None) -> int:
    """Delete traffic rows older than the retention limit; the number of rows deleted."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with db.read(engine) as conn:  # (nothing to delete, the usual case: no write lock taken)
        old = [
            conn.execute(sa.select(t.c.created_at).where(t.c.created_at < cutoff).limit(1)).first()
            for t in (captures, pairs, feedback)
        ]
    if not any(old):
        return 0
    with db.write(engine) as conn:
        n = int(conn.execute(captures.delete().where(captures.c.created_at < cutoff)).rowcount)
        n += _delete_pairs(conn, pairs.c.created_at < cutoff)
        n += int(conn.execute(feedback.delete().where(feedback.c.created_at < cutoff)).rowcount)
    if n:
        logger.info("traffic retention sweep deleted %d rows older than %s", n, cutoff)
    return n


# ---- feedback ------------------------------------------------------------------------------


def _usage_routing(row: Any) -> dict[str, Any] | None:
    """The routing decision as a usage row remembers it (an uncaptured `auto` request)."""
    if row.requested_model != "auto":
        return None
    return {
        "task": row.routing_task,
        "complexity": row.routing_complexity,
        "confidence": row.routing_confidence,
        "model": row.served_model,
        "router_version": row.router_version,
        "fallback_from": row.fallback_from,
    }


def add_feedback(
    conn: sa.Connection,
    account_id: int,
    request_id: str,
    rating: int,
    comment: str | None,
) -> dict[str, Any] | None:
    """Record a rating of one of the account's requests; None when it has no such request."""
    u = usage_logs.c
    row = conn.execute(
        sa.select(
            u.key_id, u.requested_model, u.served_model, u.routing_task, u.routing_complexity,
            u.routing_confidence, u.router_version, u.fallback_from,
        ).where(u.id == request_id, u.account_id == account_id)
    ).first()  # fmt: skip
    if row is None:
        return None
    routing = conn.execute(
        sa.select(captures.c.routing).where(
            captures.c.id == request_id, captures.c.account_id == account_id
        )
    ).scalar()
    values = {
        "id": "fb_" + secrets.token_hex(12),
        "account_id": account_id,
        "key_id": row.key_id,
        "request_id": request_id,
        "created_at": utcnow(),
        "model": row.served_model,
        "task": row.routing_task,
        "routing": routing if routing is not None else _json(_usage_routing(row)),
        "rating": rating,
        "comment": comment,
    }
    conn.execute(feedback.insert().values(**values))
    return feedback_by_id(conn, account_id, str(values["id"]))


_FEEDBACK = sa.select(feedback, captures.c.messages.label("captured_messages")).select_from(
    feedback.outerjoin(
        captures,
        sa.and_(
            captures.c.id == feedback.c.request_id,
            captures.c.account_id == feedback.c.account_id,
        ),
    )
)


def feedback_record(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "feedback",
        "created_at": row.created_at,
        "request_id": row.request_id,
        "key_id": row.key_id,
        "model": row.model,
        "task": row.task,
        "routing": _loads(row.routing),
        "messages": _loads(row.captured_messages),
        "rating": row.rating,
        "comment": row.comment,
    }


def feedback_by_id(conn: sa.Connection, account_id: int, fb_id: str) -> dict[str, Any]:
    row = conn.execute(
        _FEEDBACK.where(feedback.c.id == fb_id, feedback.c.account_id == account_id)
    ).one()
    return feedback_record(row)


# ---- pairs ---------------------------------------------------------------------------------


def store_pair(
    conn: sa.Connection,
    capture: dict[str, Any],
    other_model: str,
    other_answer: str,
    cost_micros: int,
) -> str:
    """A side-by-side pair from a captured request (`capture`: its `captures` row as a mapping)
    and another model's answer; which of the two is `a` is drawn here, once."""
    served = random.choice("ab")
    sides = [(capture["served_model"], capture["answer"]), (other_model, other_answer)]
    if served == "b":
        sides.reverse()
    pair_id = "pair_" + secrets.token_hex(12)
    conn.execute(
        pairs.insert().values(
            id=pair_id,
            account_id=capture["account_id"],
            key_id=capture["key_id"],
            request_id=capture["id"],
            created_at=utcnow(),
            messages=capture["messages"],
            task=capture["task"],
            routing=capture["routing"],
            model_a=sides[0][0],
            answer_a=sides[0][1],
            model_b=sides[1][0],
            answer_b=sides[1][1],
            served=served,
            compare_cost_micros=cost_micros,
        )
    )
    return pair_id


def _judgements(conn: sa.Connection, ids: list[str]) -> tuple[dict[str, list], dict[str, list]]:
    votes: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    verdicts: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return votes, verdicts
    for v in conn.execute(
        sa.select(pair_votes).where(pair_votes.c.pair_id.in_(ids)).order_by(pair_votes.c.id)
    ):
        votes[v.pair_id].append(
            {"winner": v.winner, "created_at": v.created_at, "source": v.source}
        )
    for v in conn.execute(
        sa.select(pair_verdicts)
        .where(pair_verdicts.c.pair_id.in_(ids))
        .order_by(pair_verdicts.c.id)
    ):
        verdicts[v.pair_id].append(
            {
                "judge": v.judge,
                "winner": v.winner,
                "created_at": v.created_at,
                "detail": _loads(v.detail),
            }
        )
    return votes, verdicts


def pair_records(conn: sa.Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    votes, verdicts = _judgements(conn, [r.id for r in rows])
    return [
        {
            "id": r.id,
            "object": "pair",
            "created_at": r.created_at,
            "request_id": r.request_id,
            "key_id": r.key_id,
            "messages": _loads(r.messages),
            "task": r.task,
            "routing": _loads(r.routing),
            "model_a": r.model_a,
            "answer_a": r.answer_a,
            "model_b": r.model_b,
            "answer_b": r.answer_b,
            "served": r.served,
            "votes": votes[r.id],
            "verdicts": verdicts[r.id],
        }
        for r in rows
    ]


def list_pairs(
    conn: sa.Connection,
    account_id: int,
    limit: int,
    after_seq: int | None = None,
    unjudged_by: str | None = None,
    unvoted: bool = False,
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of the account's pairs, oldest first, and the cursor of the next page (or None)."""
    c = pairs.c
    stmt = sa.select(pairs).where(c.account_id == account_id)
    if after_seq is not None:
        stmt = stmt.where(c.seq > after_seq)
    if unjudged_by is not None:
        stmt = stmt.where(
            ~sa.exists().where(
                pair_verdicts.c.pair_id == c.id, pair_verdicts.c.judge == unjudged_by
            )
        )
    if unvoted:
        stmt = stmt.where(~sa.exists().where(pair_votes.c.pair_id == c.id))
    rows = conn.execute(stmt.order_by(c.seq).limit(limit + 1)).all()
    page = rows[:limit]
    return pair_records(conn, page), (page[-1].seq if len(rows) > limit else None)


def own_pair(conn: sa.Connection, account_id: int, pair_id: str) -> bool:
    return (
        conn.execute(
            sa.select(pairs.c.seq).where(pairs.c.id == pair_id, pairs.c.account_id == account_id)
        ).first()
        is not None
    )


def add_vote(conn: sa.Connection, pair_id: str, winner: str, source: str = "human") -> dict:
    now = utcnow()
    conn.execute(
        pair_votes.insert().values(pair_id=pair_id, winner=winner, source=source, created_at=now)
    )
    return {"object": "pair_vote", "pair_id": pair_id, "winner": winner, "source": source,
            "created_at": now}  # fmt: skip


def add_verdict(
    conn: sa.Connection, pair_id: str, judge: str, winner: str, detail: dict[str, Any] | None
) -> dict[str, Any]:
    now = utcnow()
    conn.execute(
        pair_verdicts.insert().values(
            pair_id=pair_id, judge=judge, winner=winner, detail=_json(detail), created_at=now
        )
    )
    return {"object": "pair_verdict", "pair_id": pair_id, "judge": judge, "winner": winner,
            "created_at": now, "detail": detail}  # fmt: skip


# ---- export --------------------------------------------------------------------------------


def _pages(engine: sa.Engine, stmt: Any, seq: Any, build: Any) -> Iterator[tuple[Any, int, dict]]:
    after = 0
    while True:
        with db.read(engine) as conn:
            rows = conn.execute(stmt.where(seq > after).order_by(seq).limit(PAGE)).all()
            records = build(conn, rows)
        for row, rec in zip(rows, records, strict=True):
            yield row.created_at, row.seq, rec
        if len(rows) < PAGE:
            return
        after = rows[-1].seq


def export_records(
    engine: sa.Engine, account_id: int, since: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The account's pairs (with votes and verdicts) and feedback, oldest first, each with its
    `kind`; read a page at a time, so an export of any size streams in bounded memory."""
    p = sa.select(pairs).where(pairs.c.account_id == account_id)
    f = _FEEDBACK.where(feedback.c.account_id == account_id)
    if since is not None:
        p = p.where(pairs.c.created_at >= since)
        f = f.where(feedback.c.created_at >= since)

    def tagged(it: Iterator[tuple[Any, int, dict]], kind: str, order: int) -> Iterator[Any]:
        for created, seq, rec in it:
            yield (created, order, seq), {"kind": kind, **rec}

    pair_it = tagged(_pages(engine, p, pairs.c.seq, pair_records), "pair", 0)
    fb_it = tagged(
        _pages(engine, f, feedback.c.seq, lambda _c, rows: [feedback_record(r) for r in rows]),
        "feedback",
        1,
    )
    for _key, rec in heapq.merge(pair_it, fb_it, key=lambda kv: kv[0]):
        yield rec


def export_lines(
    engine: sa.Engine, account_id: int, since: datetime | None = None
) -> Iterator[bytes]:
    for rec in export_records(engine, account_id, since):
        yield orjson.dumps(rec, option=orjson.OPT_UTC_Z) + b"\n"
