"""Keys can be rotated: a key keeps its id while its credential (the text's id) is replaced,
and the replaced credential works on for a grace period.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("credential_id", sa.String(16)))
        batch.add_column(sa.Column("rotated_at", sa.Float))
        batch.add_column(sa.Column("previous_credential_id", sa.String(16)))
        batch.add_column(sa.Column("previous_hash", sa.String(64)))
        batch.add_column(sa.Column("previous_expires_at", sa.Float))
        batch.create_unique_constraint("uq_keys_credential_id", ["credential_id"])
        batch.create_unique_constraint("uq_keys_previous_credential_id",
                                       ["previous_credential_id"])


def downgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.drop_constraint("uq_keys_previous_credential_id", type_="unique")
        batch.drop_constraint("uq_keys_credential_id", type_="unique")
        for name in ("previous_expires_at", "previous_hash", "previous_credential_id",
                     "rotated_at", "credential_id"):
            batch.drop_column(name)
