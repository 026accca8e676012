"""Side-by-side comparisons of captured `auto` requests (issue #15), made after the user's answer.

When a captured `auto` request settles, a sampled share of them (`compare_rate` on the key, else
`COMPARE_RATE`) is handed to this process's `Comparer`: a bounded queue and one daemon thread, so
the user's request only pays for a `put` and never waits for, or sees, the comparison. The thread
sends the same messages (and the user's parameters) to one other ready model of the pool the
router chose from, billed through the same ledger (reserve, then settle with a usage row whose id
starts with `cmp_`) to the operator's evaluation account `EVAL_ACCOUNT` (an email), never to the
user's, and stores both answers as a pair (`serving.traffic.store_pair`). With no evaluation
account configured, no comparison is made. A full queue drops the comparison (logged): comparisons
are a sample, and shedding them keeps the gateway's own work first.

A hand-written queue and thread rather than a task queue (Celery, RQ): the job needs this
process's engines and database, a few per minute at most, and losing queued ones on a restart
only shrinks a sample.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask

from serving import accounts, db, ledger, routing, traffic
from serving.engines.base import EngineError
from serving.errors import ApiError
from serving.protocol import ChatCompletionRequest
from serving.schema import captures

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    request_id: str
    account_id: int
    served_model: str
    pool: tuple[str, ...]  # the models the router chose from
    body: dict[str, Any]  # the user's request body
    req: ChatCompletionRequest


class Comparer:
    """This process's comparison queue and worker thread (started on the first job, again after a
    fork: a gunicorn worker gets its own)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.queue: queue.Queue[Job] = queue.Queue(int(app.config["COMPARE_QUEUE_MAX"]))
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._eval_account: int | None = None
        self.made = 0  # pairs stored by this process
        self.dropped = 0

    def submit(self, job: Job) -> bool:
        """Queue a comparison (False: the queue is full, or no evaluation account is set)."""
        if not self.app.config.get("EVAL_ACCOUNT"):
            return False
        if self._thread is None or self._pid != os.getpid():
            with self._lock:
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._thread = threading.Thread(
                        target=self._run, name="inferbase-compare", daemon=True
                    )
                    self._thread.start()
        try:
            self.queue.put_nowait(job)
            return True
        except queue.Full:
            self.dropped += 1
            logger.warning("comparison queue full: dropped request_id=%s", job.request_id)
            return False

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued comparison is done (tests, shutdown); False on timeout."""
        q = self.queue
        with q.all_tasks_done:
            return q.all_tasks_done.wait_for(lambda: q.unfinished_tasks == 0, timeout)

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            try:
                with self.app.app_context():
                    self.compare(job)
            except Exception:
                logger.exception("comparison failed request_id=%s", job.request_id)
            finally:
                self.queue.task_done()

    def eval_account(self, engine: sa.Engine) -> int | None:
        if self._eval_account is None:
            email = str(self.app.config["EVAL_ACCOUNT"])
            with db.read(engine) as conn:
                row = accounts.find(conn, email)
            if row is None:
                logger.warning("EVAL_ACCOUNT %s does not exist: no comparisons", email)
                return None
            self._eval_account = int(row["id"])
        return self._eval_account

    def compare(self, job: Job) -> str | None:
        """Make one comparison; the pair's id, or None when none could be made."""
        app = self.app
        engine = db.get_engine(app)
        engines = app.extensions["engines"]
        eval_id = self.eval_account(engine)
        if eval_id is None:
            return None
        others = [
            m
            for m in job.pool
            if m != job.served_model and engines.get(m) is not None and engines.health(m) == "ready"
        ]
        if not others:
            logger.info("no other ready model to compare request_id=%s with", job.request_id)
            return None
        model = engines.get(random.choice(others))
        body = routing.upstream_body(job.body, model, False)
        body["stream"] = False
        worst = routing.worst_case_tokens(
            job.req, job.body, model, int(app.config["MAX_OUTPUT_TOKENS_RESERVE"])
        )
        hold = routing.worst_case_micros(model, worst)
        rid = "cmp_" + secrets.token_hex(12)
        try:
            ledger.reserve(eval_id, None, rid, hold, app.config["RESERVATION_TTL_S"], engine)
        except ApiError as e:
            logger.warning("comparison not made (%s): evaluation account: %s", rid, e.message)
            return None
        usage: dict[str, Any] = {
            "id": rid,
            "account_id": eval_id,
            "key_id": None,
            "requested_model": model.id,
            "served_model": model.id,
            "stream": False,
        }
        try:
            out = engines.complete(model.id, body)
        except EngineError as e:
            ledger.settle(rid, eval_id, hold, 0, {**usage, "status": "error",
                                                  "error_type": e.type}, engine)  # fmt: skip
            logger.warning("comparison engine error (%s, %s): %s", rid, model.id, e.message)
            return None
        u = out.get("usage") or {}
        p, c = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
        cost = ledger.cost_micros(
            p, c, model.input_price_micros_per_mtok, model.output_price_micros_per_mtok
        )
        usage.update(prompt_tokens=p, completion_tokens=c, total_tokens=p + c, status="success")
        settled = ledger.settle(rid, eval_id, hold, cost, usage, engine)
        answer = traffic.message_text(((out.get("choices") or [{}])[0]).get("message"))
        with db.write(engine) as conn:
            row = (
                conn.execute(sa.select(captures).where(captures.c.id == job.request_id))
                .mappings()
                .first()
            )
            if row is None:  # deleted meanwhile (key revoked, account deactivated)
                return None
            pair_id = traffic.store_pair(conn, dict(row), model.id, answer, settled.charged)
        self.made += 1
        logger.info(
            "comparison pair=%s request_id=%s models=%s,%s cost=%d eval_account=%s",
            pair_id,
            job.request_id,
            job.served_model,
            model.id,
            settled.charged,
            eval_id,
        )
        return pair_id


def get(app: Flask) -> Comparer:
    comparer: Comparer = app.extensions["comparer"]
    return comparer


def init_app(app: Flask) -> None:
    app.extensions["comparer"] = Comparer(app)
