"""The Alembic migrations build exactly serving/schema.py, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from serving import db
from serving.schema import metadata


def test_migrations_match_the_schema(db_url):
    engine = db.make_engine(db_url, 2)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            assert diff == []
            assert {"sessions", "api_keys"} <= set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
