"""Pools of provider keys: a provider added at run time keeps a list of key references, and a
key the provider refused is recorded for every gateway to skip.

`api_key_ref` stays: rows written before keep their one key there (and new rows write their
first key there too, so a gateway of the previous version still finds a key).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("api_key_refs", sa.JSON))
    op.create_table(
        "provider_key_states",
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("reason", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("provider_key_states")
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("api_key_refs")
