"""Accounts: creation, argon2 passwords, login checks, deactivation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app, has_app_context

from serving import ledger, traffic
from serving.errors import ApiError
from serving.schema import accounts, sessions, utcnow

logger = logging.getLogger(__name__)
_hasher = PasswordHasher()


class HashGate:
    """At most `slots` argon2 hashes at once in this process: password checks (tens of ms of CPU
    each) wait for a slot instead of taking every request thread's core, so a flood of logins
    cannot starve API traffic. No slot within `wait_s`: 503 with Retry-After."""

    def __init__(self, slots: int, wait_s: float) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.wait_s = wait_s
        self.active = 0
        self.peak = 0  # the most hashes that ever ran at once
        self.count = 0  # hashes run

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.wait_s):
            raise ApiError(
                503,
                "The server is busy checking passwords. Retry shortly.",
                type="api_error",
                code="server_busy",
                headers={"Retry-After": "1"},
            )
        with self._lock:
            self.active += 1
            self.count += 1
            self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1
            self._slots.release()


def _slot() -> Any:
    gate = current_app.extensions.get("passwords") if has_app_context() else None
    return gate.slot() if gate is not None else nullcontext()


def hash_password(password: str) -> str:
    with _slot():
        return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    with _slot():
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_account(
    conn: sa.Connection, email: str, password: str | None = None, credits_micros: int = 0
) -> int:
    email = normalize_email(email)
    if conn.execute(sa.select(accounts.c.id).where(accounts.c.email == email)).first():
        raise ApiError(409, f"Account {email} already exists.", param="email", code="exists")
    inserted = conn.execute(
        accounts.insert().values(
            email=email,
            password_hash=hash_password(password) if password else None,
            active=True,
            balance_micros=0,
            reserved_micros=0,
            created_at=utcnow(),
        )
    ).inserted_primary_key
    assert inserted is not None  # an INSERT of one row always returns its key
    account_id = int(inserted[0])
    if credits_micros:
        ledger.deposit(conn, account_id, credits_micros, "initial credits")
    logger.info("account created id=%s", account_id)
    return int(account_id)


def find(conn: sa.Connection, email: str) -> dict[str, Any] | None:
    row = (
        conn.execute(sa.select(accounts).where(accounts.c.email == normalize_email(email)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def email_of(conn: sa.Connection, account_id: int) -> str:
    return str(
        conn.execute(sa.select(accounts.c.email).where(accounts.c.id == account_id)).scalar_one()
    )


def require(conn: sa.Connection, email: str) -> dict[str, Any]:
    row = find(conn, email)
    if row is None:
        raise ApiError(404, f"No account {normalize_email(email)}.", param="email")
    return row


def check_login(conn: sa.Connection, email: str, password: str) -> dict[str, Any]:
    """The account for these credentials, or 401 (same message for any failure)."""
    row = find(conn, email)
    ok = False
    if row is not None and row["password_hash"]:
        ok = _verify(row["password_hash"], password)
    else:
        hash_password(password)  # spend the same time as a real check
    if not ok or row is None:
        raise ApiError(401, "Incorrect email or password.", code="invalid_credentials")
    if not row["active"]:
        raise ApiError(403, "This account is deactivated.", code="account_deactivated")
    return row


def set_password(conn: sa.Connection, account_id: int, password: str) -> int:
    """Set the account's password and revoke all its browser sessions (how many were live)."""
    conn.execute(
        accounts.update()
        .where(accounts.c.id == account_id)
        .values(password_hash=hash_password(password))
    )
    return revoke_sessions(conn, account_id)


def revoke_sessions(conn: sa.Connection, account_id: int) -> int:
    """End every browser session of the account (their cookies stop working at once)."""
    now = utcnow()
    revoked = conn.execute(
        sessions.update()
        .where(
            sessions.c.account_id == account_id,
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > now,
        )
        .values(revoked_at=now)
    ).rowcount
    logger.info("sessions revoked account=%s count=%s", account_id, revoked)
    return int(revoked)


def deactivate(conn: sa.Connection, email: str) -> int:
    """Deactivate the account; its captured traffic, pairs and feedback are deleted."""
    row = require(conn, email)
    conn.execute(accounts.update().where(accounts.c.id == row["id"]).values(active=False))
    traffic.delete_for(conn, int(row["id"]))
    logger.info("account deactivated id=%s", row["id"])
    return int(row["id"])


def init_app(app: Flask) -> None:
    app.extensions["passwords"] = HashGate(
        int(app.config["PASSWORD_HASH_CONCURRENCY"]), float(app.config["PASSWORD_HASH_WAIT_S"])
    )
