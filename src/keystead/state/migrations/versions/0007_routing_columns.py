"""Routing in the ledger: attempts, fallbacks, cache hits and savings, structured-output
validity and degraded answers, per request and summed in the hourly rollups.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_SUMS = ("retries", "fallbacks", "cache_hits", "saved_nanousd", "schema_checked",
         "schema_invalid", "degraded")


def upgrade() -> None:
    with op.batch_alter_table("usage") as table:
        table.add_column(sa.Column("attempts", sa.SmallInteger, nullable=False,
                                   server_default="1"))
        table.add_column(sa.Column("fallback", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        table.add_column(sa.Column("cache", sa.String(8)))
        table.add_column(sa.Column("saved_nanousd", sa.BigInteger, nullable=False,
                                   server_default="0"))
        table.add_column(sa.Column("schema_valid", sa.Boolean))
        table.add_column(sa.Column("degraded", sa.String(16)))
    with op.batch_alter_table("usage_hourly") as table:
        for name in _SUMS:
            table.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_hourly") as table:
        for name in _SUMS:
            table.drop_column(name)
    with op.batch_alter_table("usage") as table:
        for name in ("degraded", "schema_valid", "saved_nanousd", "cache", "fallback",
                     "attempts"):
            table.drop_column(name)
