"""Table definitions, shared by the store and the Alembic migrations.

Money is stored as integer nano-dollars (`cost_nanousd`): exact in SQLite and PostgreSQL alike,
and sums stay exact. The API and reports turn it back into a decimal.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["ROLLUP_DIMENSIONS", "ROLLUP_SUMS", "alert_silences", "alerts", "key_sightings", "keys",
           "meta", "metadata", "provider_key_states", "providers", "teams", "usage",
           "usage_hourly", "vault_secrets"]

metadata = sa.MetaData()

keys = sa.Table(
    "keys",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("env", sa.String(32), nullable=False),
    sa.Column("team", sa.String(64)),
    sa.Column("owner", sa.String(256)),
    sa.Column("description", sa.Text),
    sa.Column("models", sa.JSON),
    sa.Column("endpoints", sa.JSON),
    sa.Column("max_tokens", sa.Integer),
    sa.Column("max_body_bytes", sa.Integer),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
    sa.Column("revoked_reason", sa.Text),
    sa.Column("last_used_at", sa.Float),
    sa.Column("disabled_at", sa.Float),
    sa.Column("credential_id", sa.String(16)),
    sa.Column("rotated_at", sa.Float),
    sa.Column("previous_credential_id", sa.String(16)),
    sa.Column("previous_hash", sa.String(64)),
    sa.Column("previous_expires_at", sa.Float),
    sa.UniqueConstraint("credential_id", name="uq_keys_credential_id"),
    sa.UniqueConstraint("previous_credential_id", name="uq_keys_previous_credential_id"),
    # Limits.as_dict() and a list of CIDRs; SQL NULL (not JSON null) when there are none.
    sa.Column("limits", sa.JSON(none_as_null=True)),
    sa.Column("ip_allowlist", sa.JSON(none_as_null=True)),
    sa.Column("cache", sa.Boolean),  # NULL: as the route says
)

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("owner", sa.String(256)),
    sa.Column("limits", sa.JSON(none_as_null=True)),
    sa.Column("ip_allowlist", sa.JSON(none_as_null=True)),
    sa.Column("created_at", sa.Float, nullable=False),
)

providers = sa.Table(
    "providers",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("base_url", sa.Text),
    sa.Column("api_key_ref", sa.String(256)),
    sa.Column("models", sa.JSON, nullable=False),
    sa.Column("deployments", sa.JSON, nullable=False),
    sa.Column("api_version", sa.String(32)),
    sa.Column("supports_responses", sa.Boolean),
    sa.Column("created_at", sa.Float, nullable=False),
    # Its keys' references in order (a pool); NULL in rows written before 0006: api_key_ref.
    sa.Column("api_key_refs", sa.JSON),
)

# Provider keys taken out of rotation (a 401/403 from the provider), shared by every gateway.
provider_key_states = sa.Table(
    "provider_key_states",
    metadata,
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("label", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("reason", sa.Text),
)

vault_secrets = sa.Table(
    "vault_secrets",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("master_key_id", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

usage = sa.Table(
    "usage",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("key_id", sa.String(16)),
    sa.Column("key_name", sa.String(128)),
    sa.Column("team", sa.String(64)),
    sa.Column("env", sa.String(32)),
    sa.Column("feature", sa.String(128)),
    sa.Column("route", sa.String(128)),
    sa.Column("model_requested", sa.String(256)),
    sa.Column("model_served", sa.String(256)),
    sa.Column("provider", sa.String(64)),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("cached_tokens", sa.Integer, nullable=False),
    sa.Column("cost_nanousd", sa.BigInteger, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("error_code", sa.String(64)),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("client_ip", sa.String(64)),
    sa.Column("user_agent", sa.String(256)),
    sa.Column("usage_estimated", sa.Boolean, nullable=False),
    sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("fallback", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cache", sa.String(8)),
    sa.Column("saved_nanousd", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("schema_valid", sa.Boolean),
    sa.Column("degraded", sa.String(16)),
    sa.Index("ix_usage_ts", "ts"),
    sa.Index("ix_usage_key_ts", "key_id", "ts"),
    # Budgets seed their counters with the exact spend of a key, team or env since a date.
    sa.Index("ix_usage_team_ts", "team", "ts"),
    sa.Index("ix_usage_env_ts", "env", "ts"),
)

# The hourly rollups the usage reports read, kept up to date in the ledger's transaction.
# Dimensions are '' rather than NULL when absent: a unique index treats NULLs as distinct on
# PostgreSQL, so NULL dimensions would defeat the upsert (ON CONFLICT) and duplicate rows.
ROLLUP_DIMENSIONS = ("key_id", "key_name", "team", "env", "feature", "route", "model",
                     "provider", "endpoint")
ROLLUP_SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens",
               "cost_nanousd", "latency_ms_sum", "retries", "fallbacks", "cache_hits",
               "saved_nanousd", "schema_checked", "schema_invalid", "degraded")

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(16)),
    sa.Column("actor", sa.String(64)),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_events_ts", "ts"),
    sa.Index("ix_events_key_ts", "key_id", "ts"),
)

usage_hourly = sa.Table(
    "usage_hourly",
    metadata,
    sa.Column("hour", sa.BigInteger, nullable=False),  # epoch seconds of the UTC hour's start
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("key_name", sa.String(128), nullable=False),
    sa.Column("team", sa.String(64), nullable=False),
    sa.Column("env", sa.String(32), nullable=False),
    sa.Column("feature", sa.String(128), nullable=False),
    sa.Column("route", sa.String(128), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),  # served, else requested
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),  # status >= 400
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_nanousd", sa.BigInteger, nullable=False),
    sa.Column("latency_ms_sum", sa.Float, nullable=False),
    sa.Column("retries", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("fallbacks", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cache_hits", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("saved_nanousd", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("schema_checked", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("schema_invalid", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("degraded", sa.BigInteger, nullable=False, server_default="0"),
    # The upsert's conflict target. It leads with the hour, so it also serves time-range reads
    # (a separate index on hour alone would only slow the writes down).
    sa.PrimaryKeyConstraint("hour", *ROLLUP_DIMENSIONS, name="pk_usage_hourly"),
)

# Alerts (migration 0009): one row per (rule, subject), written only by conditional updates, so
# that of the replicas evaluating the same rules exactly one wins each transition and sends.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("rule", sa.String(32), primary_key=True),
    sa.Column("subject", sa.String(200), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("fired_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("sent_at", sa.Float),
    sa.Column("delivery", sa.JSON(none_as_null=True)),
)

alert_silences = sa.Table(
    "alert_silences",
    metadata,
    sa.Column("target", sa.String(240), primary_key=True),
    sa.Column("until", sa.Float, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(64)),
)

# The networks and user-agent families each key was used from, added by the ledger writer
# (only what it has not seen yet), so "a source this key never used" is one indexed read.
key_sightings = sa.Table(
    "key_sightings",
    metadata,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("value", sa.String(64), primary_key=True),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Index("ix_key_sightings_first_seen", "first_seen"),
)
