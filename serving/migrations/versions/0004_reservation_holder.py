"""reservations.holder: the process holding an open reservation (host, boot, pid), so the gunicorn
master releases a dead worker's reservations when it reaps it

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 13:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_column("holder")
