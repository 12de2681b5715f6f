"""Keys can be disabled (and enabled again) without being revoked.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("disabled_at", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("disabled_at")
