"""Teams, per-key limits and IP allowlists, hourly usage rollups.

The rollups are filled from the existing ledger, so reports keep their history on upgrade.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_DIMENSIONS = ("key_id", "key_name", "team", "env", "feature", "route", "provider", "endpoint")


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("limits", sa.JSON(none_as_null=True)))
        batch.add_column(sa.Column("ip_allowlist", sa.JSON(none_as_null=True)))
    op.create_table(
        "teams",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text),
        sa.Column("owner", sa.String(256)),
        sa.Column("limits", sa.JSON(none_as_null=True)),
        sa.Column("ip_allowlist", sa.JSON(none_as_null=True)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    # Keys created before teams existed name their team freely: give each such name a team
    # record, so team limits can be set on it and key updates keep working.
    op.execute(
        "INSERT INTO teams (name, created_at) "
        "SELECT team, MIN(created_at) FROM keys WHERE team IS NOT NULL GROUP BY team"
    )
    op.create_index("ix_usage_team_ts", "usage", ["team", "ts"])
    op.create_index("ix_usage_env_ts", "usage", ["env", "ts"])
    op.create_table(
        "usage_hourly",
        sa.Column("hour", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("key_name", sa.String(128), nullable=False),
        sa.Column("team", sa.String(64), nullable=False),
        sa.Column("env", sa.String(32), nullable=False),
        sa.Column("feature", sa.String(128), nullable=False),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_nanousd", sa.BigInteger, nullable=False),
        sa.Column("latency_ms_sum", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("hour", "key_id", "key_name", "team", "env", "feature", "route",
                                "model", "provider", "endpoint", name="pk_usage_hourly"),
    )
    _backfill_rollups()


def _backfill_rollups() -> None:
    """One pass over the ledger; what the store's upsert would have built row by row."""
    if op.get_context().dialect.name == "sqlite":
        hour = "CAST(ts / 3600 AS INTEGER) * 3600"  # ts is never negative: truncation is floor
    else:
        hour = "CAST(floor(ts / 3600) AS BIGINT) * 3600"
    dims = ", ".join(f"COALESCE({d}, '')" for d in _DIMENSIONS)
    model = "COALESCE(model_served, model_requested, '')"
    op.execute(
        f"INSERT INTO usage_hourly (hour, {', '.join(_DIMENSIONS)}, model, requests, errors, "  # noqa: S608 (constants only)
        "prompt_tokens, completion_tokens, cached_tokens, cost_nanousd, latency_ms_sum) "
        f"SELECT {hour}, {dims}, {model}, COUNT(*), "
        "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(prompt_tokens), "
        "SUM(completion_tokens), SUM(cached_tokens), SUM(cost_nanousd), SUM(latency_ms) "
        f"FROM usage GROUP BY {hour}, {dims}, {model}"
    )


def downgrade() -> None:
    op.drop_table("usage_hourly")
    op.drop_index("ix_usage_env_ts", "usage")
    op.drop_index("ix_usage_team_ts", "usage")
    op.drop_table("teams")
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("ip_allowlist")
        batch.drop_column("limits")
