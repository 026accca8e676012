"""Accounts: creation, argon2 passwords, login checks, deactivation."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from serving import ledger
from serving.errors import ApiError
from serving.schema import accounts, utcnow

logger = logging.getLogger(__name__)
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


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
        try:
            ok = _hasher.verify(row["password_hash"], password)
        except (VerificationError, InvalidHashError):
            ok = False
    else:
        _hasher.hash(password)  # spend the same time as a real check
    if not ok or row is None:
        raise ApiError(401, "Incorrect email or password.", code="invalid_credentials")
    if not row["active"]:
        raise ApiError(403, "This account is deactivated.", code="account_deactivated")
    return row


def deactivate(conn: sa.Connection, email: str) -> int:
    row = require(conn, email)
    conn.execute(accounts.update().where(accounts.c.id == row["id"]).values(active=False))
    logger.info("account deactivated id=%s", row["id"])
    return int(row["id"])
