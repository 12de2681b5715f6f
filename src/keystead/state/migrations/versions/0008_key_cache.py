"""A key's own say on the response cache: NULL follows the route, false never caches, true
also uses routes whose cache is opt-in.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("cache", sa.Boolean))


def downgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("cache")
