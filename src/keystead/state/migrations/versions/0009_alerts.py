"""Alerts: their shared state (one row per rule and subject), silences, and the sources
(networks, user-agent families) each key was used from.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("rule", sa.String(32), primary_key=True),
        sa.Column("subject", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fired_at", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.Float),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("sent_at", sa.Float),
        sa.Column("delivery", sa.JSON),
    )
    op.create_table(
        "alert_silences",
        sa.Column("target", sa.String(240), primary_key=True),
        sa.Column("until", sa.Float, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(64)),
    )
    op.create_table(
        "key_sightings",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("value", sa.String(64), primary_key=True),
        sa.Column("first_seen", sa.Float, nullable=False),
    )
    op.create_index("ix_key_sightings_first_seen", "key_sightings", ["first_seen"])


def downgrade() -> None:
    op.drop_table("key_sightings")
    op.drop_table("alert_silences")
    op.drop_table("alerts")
