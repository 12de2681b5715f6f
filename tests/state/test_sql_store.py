"""SQLStore against real databases: SQLite in tmp_path and PostgreSQL (see conftest.py).

Every test takes the `store` fixture (an unopened store on an empty, migrated database) or
`fresh_store` (a database never opened), both parametrized over the two backends, and runs its
body with `run(store, body)`, which opens the store (migrations included), awaits the body and
closes the store, all in one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import pg
from keystead.state import schema
from keystead.state.records import (
    KeyRecord,
    Limits,
    ProviderKeyState,
    ProviderRecord,
    SealedRecord,
    TeamRecord,
    UsageRecord,
)
from keystead.state.sql_store import SQLStore, async_url
from keystead.state.store import GROUPS, DuplicateName, InvalidRecord
from support import with_open_store

T = TypeVar("T")


def run(store: SQLStore, body: Callable[[SQLStore], Awaitable[T]]) -> T:
    return with_open_store(store, body)


def key(name: str = "prod-webhook-bot-01", key_id: str = "abcdefgh", **fields: Any) -> KeyRecord:
    values: dict[str, Any] = {"id": key_id, "name": name, "key_hash": "h" * 64, "env": "prod",
                              "created_at": 1_700_000_000.0}
    values.update(fields)
    return KeyRecord(**values)


def usage(request_id: str, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {"request_id": request_id, "ts": 1_700_000_000.0,
                              "endpoint": "chat.completions", "status": 200}
    values.update(fields)
    return UsageRecord(**values)


DAY1 = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()
DAY2 = datetime(2026, 11, 21, 0, 0, 1, tzinfo=UTC).timestamp()


# --- schema -------------------------------------------------------------------------------------


def test_async_url_maps_sync_urls():
    assert async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_url("sqlite:////abs/x.db") == "sqlite+aiosqlite:////abs/x.db"
    assert async_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"


def test_using_a_closed_store_is_an_error(store):
    with pytest.raises(RuntimeError, match="not open"):
        asyncio.run(store.get_key("x"))


def test_migrations_create_the_schema(fresh_store):
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config as AlembicConfig
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from keystead.state import schema, sql_store

    def inspect(c: sa.Connection) -> dict[str, Any]:
        inspector = sa.inspect(c)
        return {
            "tables": set(inspector.get_table_names()),
            "indexes": {i["name"] for i in inspector.get_indexes("usage")},
            "columns": {table: {col["name"] for col in inspector.get_columns(table)}
                        for table in schema.metadata.tables},
            # Everything autogenerate would change to make the database match schema.py:
            # tables, columns, types, nullability, indexes, keys.
            "diff": compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}),
                                     schema.metadata),
        }

    async def body(s: SQLStore) -> tuple[list[Any], dict[str, Any]]:
        async with s.engine.connect() as conn:
            version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                       ).fetchall()
            return version, await conn.run_sync(inspect)

    version, found = run(fresh_store, body)
    assert {"keys", "teams", "providers", "vault_secrets", "meta", "usage", "usage_hourly",
            "alembic_version"} <= found["tables"]
    config = AlembicConfig()
    config.set_main_option("script_location", str(sql_store._MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert [tuple(row) for row in version] == [(head,)]
    assert head == sql_store.SCHEMA_HEAD, "bump SCHEMA_HEAD with every new migration"
    assert {"ix_usage_ts", "ix_usage_key_ts", "ix_usage_team_ts", "ix_usage_env_ts"} \
        <= found["indexes"]
    # The migrations build exactly the tables the code describes in schema.py.
    for name, table in schema.metadata.tables.items():
        assert found["columns"][name] == {c.name for c in table.columns}, name
    assert found["diff"] == []


def test_reopening_a_migrated_database_keeps_its_data(fresh_store):
    store = fresh_store
    run(store, lambda s: s.insert_key(key()))

    async def body(s: SQLStore) -> tuple[KeyRecord | None, list[Any]]:
        async with s.engine.connect() as conn:
            versions = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                        ).fetchall()
        return await s.get_key("abcdefgh"), versions

    found, versions = run(store, body)
    assert found == key()
    assert len(versions) == 1


def test_store_can_be_closed_twice(store):
    run(store, lambda s: s.close())


# --- keys ---------------------------------------------------------------------------------------


def test_key_insert_then_get_roundtrips_every_field(store):
    full = key(team="payments", owner="ana@example.com", description="the webhook bot",
               models=("gpt-4o-mini", "gpt-4.1*"), endpoints=("chat.completions",),
               max_tokens=4096, max_body_bytes=65536, expires_at=1_800_000_000.5,
               last_used_at=1_700_000_100.25, cache=False)

    async def body(s: SQLStore) -> tuple[KeyRecord | None, KeyRecord | None, KeyRecord | None]:
        await s.insert_key(full)
        return (await s.get_key(full.id), await s.find_key_by_name(full.name),
                await s.get_key("missing1"))

    by_id, by_name, missing = run(store, body)
    assert by_id == full
    assert by_name == full
    assert by_id.models == ("gpt-4o-mini", "gpt-4.1*")  # a tuple again, not a list
    assert missing is None


def test_key_with_no_restrictions_keeps_none(store):
    async def body(s: SQLStore) -> KeyRecord | None:
        await s.insert_key(key())
        return await s.get_key("abcdefgh")

    found = run(store, body)
    assert found.models is None
    assert found.endpoints is None
    assert found.team is None


def test_find_key_by_unknown_name_is_none(store):
    assert run(store, lambda s: s.find_key_by_name("prod-nope-nope")) is None


def test_list_keys_is_ordered_by_name(store):
    async def body(s: SQLStore) -> list[KeyRecord]:
        await s.insert_key(key("staging-rag-worker", "bbbbbbbb", env="staging"))
        await s.insert_key(key("dev-app-chat", "cccccccc", env="dev"))
        await s.insert_key(key("prod-app-chat", "aaaaaaaa"))
        return await s.list_keys()

    assert [k.name for k in run(store, body)] == ["dev-app-chat", "prod-app-chat",
                                                 "staging-rag-worker"]


def test_duplicate_key_name_is_refused(store):
    async def body(s: SQLStore) -> list[KeyRecord]:
        await s.insert_key(key("prod-app-chat", "aaaaaaaa"))
        with pytest.raises(DuplicateName, match="prod-app-chat"):
            await s.insert_key(key("prod-app-chat", "bbbbbbbb"))
        return await s.list_keys()

    assert [k.id for k in run(store, body)] == ["aaaaaaaa"]


def test_update_key_changes_only_the_given_fields(store):
    async def body(s: SQLStore) -> tuple[KeyRecord | None, KeyRecord | None]:
        await s.insert_key(key(team="a", models=("gpt-4o",)))
        updated = await s.update_key("abcdefgh", revoked_at=1_700_000_500.0,
                                     revoked_reason="leaked", models=["gpt-4o", "o3"])
        return updated, await s.get_key("abcdefgh")

    updated, stored = run(store, body)
    assert updated == stored
    assert stored.revoked_at == 1_700_000_500.0
    assert stored.revoked_reason == "leaked"
    assert stored.models == ("gpt-4o", "o3")
    assert stored.team == "a"
    assert stored.status(time.time()) == "revoked"


def test_update_key_can_clear_a_restriction(store):
    async def body(s: SQLStore) -> KeyRecord | None:
        await s.insert_key(key(models=("gpt-4o",)))
        return await s.update_key("abcdefgh", models=None)

    assert run(store, body).models is None


def test_update_unknown_key_is_none(store):
    assert run(store, lambda s: s.update_key("zzzzzzzz", team="x")) is None


def test_touch_keys_sets_last_used(store):
    async def body(s: SQLStore) -> list[KeyRecord]:
        await s.insert_key(key("prod-a-b", "aaaaaaaa"))
        await s.insert_key(key("prod-c-d", "bbbbbbbb"))
        await s.insert_key(key("prod-e-f", "cccccccc"))
        await s.touch_keys({"aaaaaaaa": 1_700_000_001.5, "bbbbbbbb": 1_700_000_002.5,
                            "unknown1": 1.0})
        await s.touch_keys({})
        return await s.list_keys()

    assert [k.last_used_at for k in run(store, body)] == [1_700_000_001.5, 1_700_000_002.5, None]


# --- providers ----------------------------------------------------------------------------------


def provider(name: str = "openai", **fields: Any) -> ProviderRecord:
    values: dict[str, Any] = {"name": name, "type": "openai",
                              "base_url": "https://api.openai.com/v1",
                              "api_key_ref": f"vault:provider.{name}", "created_at": 1.0}
    values.update(fields)
    return ProviderRecord(**values)


def test_providers_insert_list_delete(store):
    azure = provider("azure", type="azure", base_url="https://r.openai.azure.com",
                     models=("gpt-4o",), deployments={"gpt-4o": "my-gpt4o"},
                     api_version="2024-10-21", supports_responses=False)
    local = provider("local", type="openai-compatible", base_url="http://localhost:11434/v1",
                     api_key_ref=None, models=("llama*",), supports_responses=True)

    async def body(s: SQLStore) -> tuple[list[ProviderRecord], bool, bool, list[ProviderRecord]]:
        await s.insert_provider(local)
        await s.insert_provider(azure)
        listed = await s.list_providers()
        deleted = await s.delete_provider("azure")
        deleted_again = await s.delete_provider("azure")
        return listed, deleted, deleted_again, await s.list_providers()

    listed, deleted, deleted_again, after = run(store, body)
    assert listed == [azure, local]  # ordered by name, every field back as written
    assert deleted is True
    assert deleted_again is False
    assert after == [local]


def test_provider_key_pools_and_key_states(store):
    """A pool's references round-trip (a row of before 0006 has its one key in api_key_ref);
    key states are upserted, listed and deleted, and go with their provider."""
    pooled = provider("pooled", api_key_ref="vault:provider:pooled",
                      api_key_refs=("vault:provider:pooled", "env:POOL_B"))
    legacy = provider("legacy")
    taken = ProviderKeyState(provider="pooled", fingerprint="0123456789ab", label="#2",
                             since=5.0, reason="HTTP 401")

    async def body(s: SQLStore) -> dict[str, Any]:
        await s.insert_provider(pooled)
        await s.insert_provider(legacy)
        found: dict[str, Any] = {"listed": await s.list_providers()}
        found["updated"] = await s.set_provider_keys(
            "pooled", ["vault:provider:pooled", "env:POOL_B", "file:/run/c"])
        found["missing"] = await s.set_provider_keys("nope", ["env:X"])
        found["after"] = {p.name: p for p in await s.list_providers()}
        await s.put_provider_key_state(taken)
        await s.put_provider_key_state(dataclasses.replace(taken, since=6.0, reason="HTTP 403"))
        await s.put_provider_key_state(dataclasses.replace(taken, provider="legacy"))
        found["states"] = await s.list_provider_key_states()
        found["deleted"] = await s.delete_provider_key_state("legacy", "0123456789ab")
        found["deleted_again"] = await s.delete_provider_key_state("legacy", "0123456789ab")
        await s.delete_provider("pooled")
        found["left"] = await s.list_provider_key_states()
        return found

    found = run(store, body)
    assert found["listed"] == [legacy, pooled]
    assert [p.refs for p in found["listed"]] == [("vault:provider.legacy",),
                                                 ("vault:provider:pooled", "env:POOL_B")]
    assert (found["updated"], found["missing"]) == (True, False)
    after = found["after"]["pooled"]
    assert after.refs == ("vault:provider:pooled", "env:POOL_B", "file:/run/c")
    assert after.api_key_ref == "vault:provider:pooled"  # where an older gateway looks
    assert found["states"] == [
        dataclasses.replace(taken, provider="legacy"),
        dataclasses.replace(taken, since=6.0, reason="HTTP 403")]
    assert (found["deleted"], found["deleted_again"]) == (True, False)
    assert found["left"] == []


def test_duplicate_provider_name_is_refused(store):
    async def body(s: SQLStore) -> list[ProviderRecord]:
        await s.insert_provider(provider("openai"))
        with pytest.raises(DuplicateName, match="openai"):
            await s.insert_provider(provider("openai", base_url="https://other/v1"))
        return await s.list_providers()

    assert [p.base_url for p in run(store, body)] == ["https://api.openai.com/v1"]


# --- vault secrets ------------------------------------------------------------------------------


def test_secret_put_inserts_then_updates(store):
    first = SealedRecord("provider.openai", b"\x00wrapped-1", b"\x01cipher-1", "aaaaaaaaaaaa")
    second = SealedRecord("provider.openai", b"\x00wrapped-2", b"\x01cipher-2", "bbbbbbbbbbbb")

    async def body(s: SQLStore) -> tuple[Any, Any, list[SealedRecord]]:
        await s.put_secret(first)
        after_insert = await s.get_secret("provider.openai")
        await s.put_secret(second)
        return after_insert, await s.get_secret("provider.openai"), await s.list_secrets()

    after_insert, after_update, listed = run(store, body)
    assert after_insert == first
    assert after_update == second
    assert listed == [second]
    assert isinstance(after_update.wrapped_key, bytes)


def test_secrets_list_get_delete(store):
    records = [SealedRecord(f"s{i}", bytes([i]) * 60, bytes([i]) * 40, "k" * 12)
               for i in range(3)]

    async def body(s: SQLStore) -> tuple[list[SealedRecord], Any, list[SealedRecord]]:
        for record in records:
            await s.put_secret(record)
        listed = await s.list_secrets()
        await s.delete_secret("s1")
        await s.delete_secret("never-existed")
        return listed, await s.get_secret("s1"), await s.list_secrets()

    listed, gone, after = run(store, body)
    assert sorted(listed, key=lambda r: r.id) == records
    assert gone is None
    assert sorted(r.id for r in after) == ["s0", "s2"]


# --- versions -----------------------------------------------------------------------------------


def test_versions_start_at_zero_and_bump(store):
    async def body(s: SQLStore) -> list[int]:
        return [await s.get_version("keys"), await s.bump_version("keys"),
                await s.bump_version("keys"), await s.get_version("keys"),
                await s.get_version("providers"), await s.bump_version("providers")]

    assert run(store, body) == [0, 1, 2, 2, 0, 1]


def test_concurrent_bumps_are_not_lost(store):
    async def body(s: SQLStore) -> tuple[list[int], int]:
        results = await asyncio.gather(*(s.bump_version("keys") for _ in range(10)))
        return sorted(results), await s.get_version("keys")

    results, final = run(store, body)
    assert results == list(range(1, 11))
    assert final == 10


# --- usage --------------------------------------------------------------------------------------


LEDGER = [
    usage("r1", ts=DAY1, key_id="aaaaaaaa", key_name="prod-app-chat", team="payments",
          env="prod", feature="checkout", model_requested="gpt-4o-mini",
          model_served="gpt-4o-mini-2024-07-18", provider="openai", prompt_tokens=100,
          completion_tokens=20, cached_tokens=10, cost_usd=Decimal("0.000000020"),
          latency_ms=100.0),
    usage("r2", ts=DAY1 + 60, key_id="aaaaaaaa", key_name="prod-app-chat", team="payments",
          env="prod", feature="checkout", model_served="gpt-4o-mini-2024-07-18",
          provider="openai", prompt_tokens=200, completion_tokens=30,
          cost_usd=Decimal("0.000000020"), latency_ms=200.0),
    usage("r3", ts=DAY2, key_id="aaaaaaaa", key_name="prod-app-chat", team="payments",
          env="prod", feature="refunds", model_served="gpt-4o-mini-2024-07-18",
          provider="openai", prompt_tokens=300, completion_tokens=40,
          cost_usd=Decimal("0.000000020"), latency_ms=300.0),
    usage("r4", ts=DAY2 + 5, key_id="bbbbbbbb", key_name="staging-rag-worker", team="search",
          env="staging", endpoint="embeddings", model_served="text-embedding-3-small",
          provider="azure", prompt_tokens=1000, cost_usd=Decimal("0.123456789"),
          latency_ms=50.0),
    usage("r5", ts=DAY2 + 10, key_id="bbbbbbbb", key_name="staging-rag-worker", team="search",
          env="staging", endpoint="embeddings", status=429, model_served=None, provider="azure",
          error_code="rate_limited", latency_ms=5.0),
    usage("r6", ts=DAY2 + 20, status=401, error_code="invalid_api_key", latency_ms=1.0),
]


def with_ledger(store: SQLStore, body: Callable[[SQLStore], Awaitable[T]]) -> T:
    async def main(s: SQLStore) -> T:
        await s.insert_usage(LEDGER)
        return await body(s)

    return run(store, main)


def by_group(rows: list[Any]) -> dict[str | None, Any]:
    return {row.group: row for row in rows}


def test_usage_records_roundtrip(store):
    record = usage("req-1", key_id="aaaaaaaa", key_name="prod-app-chat", team="t", env="prod",
                   feature="f", route="r", model_requested="gpt-4o", model_served="gpt-4o-x",
                   provider="openai", prompt_tokens=1, completion_tokens=2, cached_tokens=3,
                   cost_usd=Decimal("0.000123456"), latency_ms=12.5, ttft_ms=3.25,
                   error_code=None, stream=True, client_ip="10.0.0.1", user_agent="openai-py",
                   usage_estimated=True)

    async def body(s: SQLStore) -> list[UsageRecord]:
        await s.insert_usage([record])
        await s.insert_usage([])
        return await s.recent_usage(10)

    (back,) = run(store, body)
    assert back == record
    assert back.cost_usd == Decimal("0.000123456")


def test_costs_are_stored_as_exact_nano_dollars(store):
    records = [usage(f"r{i}", cost_usd=Decimal("0.000000020")) for i in range(3)]

    async def body(s: SQLStore) -> list[Any]:
        await s.insert_usage(records)
        return await s.query_usage("endpoint", since=0)

    (row,) = run(store, body)
    assert row.cost_usd == Decimal("0.000000060")
    assert row.as_dict()["cost_usd"] == "0.000000060"


def test_costs_finer_than_a_nano_dollar_are_rounded(store):
    async def body(s: SQLStore) -> list[UsageRecord]:
        await s.insert_usage([usage("r1", cost_usd=Decimal("0.0000000014")),
                              usage("r2", cost_usd=Decimal("0.0000000016"))])
        return await s.recent_usage(10)

    assert sorted(r.cost_usd for r in run(store, body)) == [Decimal("1E-9"), Decimal("2E-9")]


def test_many_small_costs_sum_exactly(store):
    records = [usage(f"r{i}", cost_usd=Decimal("0.000000001") * (i % 7 + 1)) for i in range(500)]
    expected = sum((r.cost_usd for r in records), Decimal(0))

    async def body(s: SQLStore) -> list[Any]:
        await s.insert_usage(records)
        return await s.query_usage("key", since=0)

    (row,) = run(store, body)
    assert row.cost_usd == expected
    assert row.requests == 500


def test_query_usage_by_key(store):
    rows = with_ledger(store, lambda s: s.query_usage("key", since=0))
    groups = by_group(rows)
    assert set(groups) == {"prod-app-chat", "staging-rag-worker", None}
    chat = groups["prod-app-chat"]
    assert (chat.requests, chat.errors) == (3, 0)
    assert (chat.prompt_tokens, chat.completion_tokens, chat.cached_tokens) == (600, 90, 10)
    assert chat.cost_usd == Decimal("0.000000060")
    assert chat.avg_latency_ms == pytest.approx(200.0)
    rag = groups["staging-rag-worker"]
    assert (rag.requests, rag.errors, rag.prompt_tokens) == (2, 1, 1000)
    assert rag.cost_usd == Decimal("0.123456789")
    anonymous = groups[None]
    assert (anonymous.requests, anonymous.errors, anonymous.cost_usd) == (1, 1, Decimal(0))
    # Most expensive first.
    assert rows[0].group == "staging-rag-worker"
    assert rows[1].group == "prod-app-chat"


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("team", {"payments": (3, 0, "0.000000060"), "search": (2, 1, "0.123456789"),
                  None: (1, 1, "0")}),
        ("model", {"gpt-4o-mini-2024-07-18": (3, 0, "0.000000060"),
                   "text-embedding-3-small": (1, 0, "0.123456789"), None: (2, 2, "0")}),
        ("feature", {"checkout": (2, 0, "0.000000040"), "refunds": (1, 0, "0.000000020"),
                     None: (3, 2, "0.123456789")}),
        ("env", {"prod": (3, 0, "0.000000060"), "staging": (2, 1, "0.123456789"),
                 None: (1, 1, "0")}),
        ("provider", {"openai": (3, 0, "0.000000060"), "azure": (2, 1, "0.123456789"),
                      None: (1, 1, "0")}),
        ("endpoint", {"chat.completions": (4, 1, "0.000000060"),
                      "embeddings": (2, 1, "0.123456789")}),
        ("day", {"2026-11-20": (2, 0, "0.000000040"), "2026-11-21": (4, 2, "0.123456809")}),
    ],
)
def test_query_usage_groups(store, group_by, expected):
    rows = with_ledger(store, lambda s: s.query_usage(group_by, since=0))
    got = {row.group: (row.requests, row.errors, row.cost_usd) for row in rows}
    assert got == {group: (requests, errors, Decimal(cost))
                   for group, (requests, errors, cost) in expected.items()}
    assert sum(row.requests for row in rows) == len(LEDGER)
    if group_by == "day":  # time series read in time order
        assert [row.group for row in rows] == sorted(row.group for row in rows)
    else:  # most expensive first
        costs = [row.cost_usd for row in rows]
        assert costs == sorted(costs, reverse=True)


def test_query_usage_since_and_until_work_in_whole_hours(store):
    midnight = DAY2 - 1  # DAY2 is one second past midnight

    async def body(s: SQLStore) -> list[list[Any]]:
        await s.insert_usage(LEDGER)
        return [await s.query_usage("day", since=midnight),
                await s.query_usage("day", since=DAY2 + 100),  # rounded down to midnight
                await s.query_usage("day", since=0, until=midnight),  # until is exclusive
                await s.query_usage("day", since=0, until=DAY2),  # rounded up to 01:00
                await s.query_usage("key", since=midnight + 3600),
                await s.query_usage("key", since=0, until=DAY1 - 3600)]

    after, rounded_down, before, rounded_up, later, earlier = run(store, body)
    assert [(r.group, r.requests) for r in after] == [("2026-11-21", 4)]
    assert [(r.group, r.requests) for r in rounded_down] == [("2026-11-21", 4)]
    assert [(r.group, r.requests) for r in before] == [("2026-11-20", 2)]
    assert [(r.group, r.requests) for r in rounded_up] == [("2026-11-20", 2), ("2026-11-21", 4)]
    assert later == []
    assert earlier == []


def test_usage_row_as_dict_is_json_ready(store):
    rows = with_ledger(store, lambda s: s.query_usage("key", since=0))
    chat = by_group(rows)["prod-app-chat"].as_dict()
    assert chat == {"group": "prod-app-chat", "requests": 3, "errors": 0, "prompt_tokens": 600,
                    "completion_tokens": 90, "cached_tokens": 10, "cost_usd": "0.000000060",
                    "avg_latency_ms": 200.0, "retries": 0, "fallbacks": 0, "cache_hits": 0,
                    "saved_usd": "0.000000000", "schema_checked": 0, "schema_invalid": 0,
                    "degraded": 0}


def test_recent_usage_is_newest_first_with_limit_and_key_filter(store):
    async def body(s: SQLStore) -> tuple[list[UsageRecord], ...]:
        await s.insert_usage(LEDGER[:3])
        await s.insert_usage(LEDGER[3:])
        return (await s.recent_usage(3), await s.recent_usage(100, key_id="aaaaaaaa"),
                await s.recent_usage(1, key_id="bbbbbbbb"), await s.recent_usage(5, "nobody11"))

    latest, chat, rag, nobody = run(store, body)
    assert [r.request_id for r in latest] == ["r6", "r5", "r4"]
    assert [r.request_id for r in chat] == ["r3", "r2", "r1"]
    assert [r.request_id for r in rag] == ["r5"]
    assert nobody == []


def test_a_database_at_the_first_migration_is_upgraded_in_place(tmp_path) -> None:
    """Existing installations keep their keys when a migration adds a column."""
    import asyncio

    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import create_engine

    from keystead.state import sql_store
    from keystead.state.sql_store import SQLStore

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        config = AlembicConfig()
        config.set_main_option("script_location", str(sql_store._MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    engine.dispose()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO keys (id, name, key_hash, env, created_at) "
                   "VALUES ('abcdefgh', 'dev-old-key', 'h', 'dev', 1.0)")

    async def run() -> None:
        store = SQLStore(f"sqlite:///{path}")
        await store.open()
        try:
            record = await store.get_key("abcdefgh")
            assert record is not None and record.name == "dev-old-key"
            assert record.disabled_at is None and record.status(2.0) == "active"
            updated = await store.update_key("abcdefgh", disabled_at=3.0)
            assert updated is not None and updated.status(4.0) == "disabled"
        finally:
            await store.close()

    asyncio.run(run())


def _at_revision(url: str, revision: str, *rows: tuple[str, Any]) -> None:
    """A database migrated up to `revision` only, as an older keystead left it, holding `rows`
    ((SQL, parameters) pairs) written in the same transaction."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from keystead.state import sql_store

    def upgrade(connection: sa.Connection) -> None:
        config = AlembicConfig()
        config.set_main_option("script_location", str(sql_store._MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async def main() -> None:
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(async_url(url))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(upgrade)
                for statement, params in rows:
                    await conn.execute(sa.text(statement), params)
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_a_database_at_0002_is_upgraded_in_place_and_its_ledger_rolled_up(fresh_store):
    """0003 adds key limits, teams and the rollups; the reports keep the ledger's history."""
    later = ("attempts", "fallback", "cache", "saved_nanousd", "schema_valid", "degraded")
    columns = [c.name for c in schema.usage.columns if c.name not in ("id", *later)]
    _at_revision(
        fresh_store.url, "0002",
        ("INSERT INTO keys (id, name, key_hash, env, created_at, disabled_at) "
         "VALUES ('abcdefgh', 'dev-old-key', 'h', 'dev', 1.0, 2.0)", {}),
        ("INSERT INTO keys (id, name, key_hash, env, team, created_at) VALUES "
         "('bbbbbbbb', 'dev-old-search', 'h', 'dev', 'search', 5.0), "
         "('cccccccc', 'dev-old-search-02', 'h', 'dev', 'search', 3.0)", {}),
        (f"INSERT INTO usage ({', '.join(columns)}) "
         f"VALUES ({', '.join(':' + c for c in columns)})",
         [_ledger_row(r) for r in [*LEDGER, *ROLLUP_LEDGER[:200]]]),
    )

    async def body(s: SQLStore) -> dict[str, Any]:
        found = await s.get_key("abcdefgh")
        updated = await s.update_key("abcdefgh", limits=Limits(rpm=5),
                                     ip_allowlist=("10.0.0.0/8",))
        return {"key": found, "updated": updated, "teams": await s.list_teams(),
                "by_key": await s.query_usage("key", since=0),
                "by_day": await s.query_usage("day", since=0),
                "by_model": await s.query_usage("model", since=0),
                "ledger": await s.recent_usage(1000)}

    got = run(fresh_store, body)
    assert got["key"].name == "dev-old-key" and got["key"].disabled_at == 2.0
    assert got["key"].limits == Limits() and got["key"].ip_allowlist is None
    assert got["updated"].limits == Limits(rpm=5)
    assert got["updated"].ip_allowlist == ("10.0.0.0/8",)
    # Team names keys used before teams existed become teams.
    assert [(t.name, t.created_at, t.limits) for t in got["teams"]] == [("search", 3.0, Limits())]
    assert len(got["ledger"]) == len(LEDGER) + 200
    for group_by in ("key", "day", "model"):
        assert _rows(got[f"by_{group_by}"]) == _expected([*LEDGER, *ROLLUP_LEDGER[:200]],
                                                         group_by), group_by


_LATER_COLUMNS = ("attempts", "fallback", "cache", "saved_usd", "schema_valid", "degraded")


def _ledger_row(record: UsageRecord) -> dict[str, Any]:
    """A ledger row as a database at 0002 holds it (the routing columns came with 0007)."""
    values = {name: getattr(record, name) for name in UsageRecord.__slots__
              if name not in _LATER_COLUMNS}
    values["cost_nanousd"] = int(values.pop("cost_usd") * 10**9)
    return values




# --- key limits and IP allowlists ---------------------------------------------------------------


def test_key_limits_and_ip_allowlist_roundtrip(store):
    limits = Limits(rpm=60, rpd=10_000, tpm=90_000, tpd=None, max_parallel=4,
                    budget_usd=Decimal("12.345678901"), budget_period="day")
    limited = key(limits=limits, ip_allowlist=("10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"))

    async def body(s: SQLStore) -> list[Any]:
        await s.insert_key(limited)
        await s.insert_key(key("prod-other-key", "bbbbbbbb"))
        # A budget period alone is not "no limits": it must come back too.
        await s.insert_key(key("prod-daily-key", "cccccccc", limits=Limits(budget_period="day")))
        async with s.engine.connect() as conn:
            nulls = (await conn.execute(sa.text(
                "SELECT limits IS NULL, ip_allowlist IS NULL FROM keys WHERE id = 'bbbbbbbb'"
            ))).one()
        return [await s.get_key("abcdefgh"), await s.get_key("bbbbbbbb"),
                await s.get_key("cccccccc"), tuple(nulls)]

    back, plain, daily, nulls = run(store, body)
    assert back == limited
    assert back.limits.budget_usd == Decimal("12.345678901")  # exact: stored as a string
    assert back.ip_allowlist == ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32")
    assert plain.limits == Limits() and plain.ip_allowlist is None
    assert nulls == (True, True)  # SQL NULL, not a JSON null
    assert daily.limits == Limits(budget_period="day")


def test_update_key_sets_and_clears_limits_and_allowlist(store):
    async def body(s: SQLStore) -> list[KeyRecord | None]:
        await s.insert_key(key())
        first = await s.update_key("abcdefgh", limits=Limits(tpm=1000),
                                   ip_allowlist=["203.0.113.0/24"])
        second = await s.update_key("abcdefgh", limits=first.limits.merged(rpm=10, tpm=None))
        cleared = await s.update_key("abcdefgh", limits=Limits(), ip_allowlist=None)
        return [first, second, cleared]

    first, second, cleared = run(store, body)
    assert first.limits == Limits(tpm=1000)
    assert first.ip_allowlist == ("203.0.113.0/24",)
    assert second.limits == Limits(rpm=10)
    assert second.ip_allowlist == ("203.0.113.0/24",)  # untouched
    assert cleared.limits == Limits() and cleared.ip_allowlist is None


def test_key_cache_setting_roundtrips_and_updates(store):
    """None (follow the route), False and True are three values, NULL in the column for None."""

    async def body(s: SQLStore) -> dict[str, Any]:
        await s.insert_key(key("prod-pii-bot", "aaaaaaaa", cache=False))
        await s.insert_key(key("prod-opted-in", "bbbbbbbb", cache=True))
        await s.insert_key(key("prod-plain-bot", "cccccccc"))
        async with s.engine.connect() as conn:
            nulls = dict((await conn.execute(sa.text(
                "SELECT id, cache IS NULL FROM keys ORDER BY id"))).all())
        stored = {k.id: k.cache for k in await s.list_keys()}
        turned_on = await s.update_key("aaaaaaaa", cache=True)
        reset = await s.update_key("bbbbbbbb", cache=None)
        turned_off = await s.update_key("cccccccc", cache=False)
        untouched = await s.update_key("cccccccc", team="x")
        return {"nulls": nulls, "stored": stored, "on": turned_on, "reset": reset,
                "off": turned_off, "untouched": untouched,
                "again": await s.get_key("aaaaaaaa")}

    got = run(store, body)
    assert got["stored"] == {"aaaaaaaa": False, "bbbbbbbb": True, "cccccccc": None}
    assert {k: bool(v) for k, v in got["nulls"].items()} == {
        "aaaaaaaa": False, "bbbbbbbb": False, "cccccccc": True}
    assert got["on"].cache is True and got["again"] == got["on"]
    assert got["reset"].cache is None
    assert got["off"].cache is False
    assert got["untouched"].cache is False and got["untouched"].team == "x"


def test_keys_from_before_0008_follow_the_routes(fresh_store):
    """0008 adds keys.cache; keys an older keystead wrote come back with None."""
    _at_revision(
        fresh_store.url, "0007",
        ("INSERT INTO keys (id, name, key_hash, env, created_at) "
         "VALUES ('abcdefgh', 'dev-old-key', 'h', 'dev', 1.0)", {}))

    async def body(s: SQLStore) -> tuple[KeyRecord | None, KeyRecord | None]:
        return await s.get_key("abcdefgh"), await s.update_key("abcdefgh", cache=False)

    old, updated = run(fresh_store, body)
    assert old is not None and old.name == "dev-old-key" and old.cache is None
    assert updated is not None and updated.cache is False


def test_timestamps_keep_sub_second_precision(store):
    # Float is double precision on PostgreSQL too (REAL would keep about 7 digits).
    precise = key(created_at=1_700_000_000.123456, expires_at=1_800_000_000.654321)

    async def body(s: SQLStore) -> KeyRecord | None:
        await s.insert_key(precise)
        await s.touch_keys({"abcdefgh": 1_700_000_001.000001})
        return await s.get_key("abcdefgh")

    back = run(store, body)
    assert back.created_at == 1_700_000_000.123456
    assert back.expires_at == 1_800_000_000.654321
    assert back.last_used_at == 1_700_000_001.000001


# --- teams --------------------------------------------------------------------------------------


def team(name: str = "payments", **fields: Any) -> TeamRecord:
    values: dict[str, Any] = {"name": name, "created_at": 1_700_000_000.25}
    values.update(fields)
    return TeamRecord(**values)


def test_teams_insert_get_list_update(store):
    payments = team("payments", description="checkout and refunds", owner="ana@example.com",
                    limits=Limits(rpm=600, budget_usd=Decimal("500"), budget_period="month"),
                    ip_allowlist=("10.1.0.0/16",))
    search = team("search")

    async def body(s: SQLStore) -> dict[str, Any]:
        await s.insert_team(search)
        await s.insert_team(payments)
        listed = await s.list_teams()
        got = await s.get_team("payments")
        updated = await s.update_team("search", owner="bo@example.com",
                                      limits=Limits(max_parallel=8), ip_allowlist=("::1/128",))
        cleared = await s.update_team("payments", limits=Limits(), ip_allowlist=None,
                                      description=None)
        return {"listed": listed, "got": got, "updated": updated, "cleared": cleared,
                "missing": await s.get_team("nobody"),
                "update_missing": await s.update_team("nobody", owner="x"),
                "after": await s.list_teams()}

    got = run(store, body)
    assert got["listed"] == [payments, search]  # by name, every field back as written
    assert got["got"] == payments
    assert got["updated"] == team("search", owner="bo@example.com",
                                  limits=Limits(max_parallel=8), ip_allowlist=("::1/128",))
    assert got["cleared"] == team("payments", owner="ana@example.com")
    assert got["missing"] is None and got["update_missing"] is None
    assert got["after"] == [got["cleared"], got["updated"]]


def test_duplicate_team_name_is_refused(store):
    async def body(s: SQLStore) -> list[TeamRecord]:
        await s.insert_team(team("payments", owner="first"))
        with pytest.raises(DuplicateName, match="payments"):
            await s.insert_team(team("payments", owner="second"))
        return await s.list_teams()

    assert [(t.name, t.owner) for t in run(store, body)] == [("payments", "first")]


# --- secrets: first writer wins -----------------------------------------------------------------


def test_add_secret_inserts_only_when_absent(store):
    first = SealedRecord("vault.pepper", b"w1", b"c1", "aaaaaaaaaaaa")
    second = SealedRecord("vault.pepper", b"w2", b"c2", "bbbbbbbbbbbb")

    async def body(s: SQLStore) -> list[Any]:
        return [await s.add_secret(first), await s.add_secret(second),
                await s.get_secret("vault.pepper")]

    assert run(store, body) == [True, False, first]


# --- rollups ------------------------------------------------------------------------------------


def _rows(rows: list[Any]) -> dict[str | None, tuple[Any, ...]]:
    return {r.group: (r.requests, r.errors, r.prompt_tokens, r.completion_tokens,
                      r.cached_tokens, r.cost_usd, round(r.avg_latency_ms, 6)) for r in rows}


def _group_of(record: UsageRecord, group_by: str) -> str | None:
    """The reference answer, from the ledger records themselves."""
    moment = datetime.fromtimestamp(record.ts, UTC)
    if group_by == "hour":
        return moment.strftime("%Y-%m-%dT%H:00Z")
    if group_by == "day":
        return moment.strftime("%Y-%m-%d")
    if group_by == "key":
        return record.key_name
    if group_by == "model":
        return record.model_served or record.model_requested
    value: str | None = getattr(record, group_by)
    return value


def _matches(record: UsageRecord, filters: dict[str, str]) -> bool:
    for dimension, value in filters.items():
        if dimension == "key":
            if value not in (record.key_id, record.key_name):
                return False
        elif (_group_of(record, dimension) or "") != value:
            return False
    return True


def _expected(records: list[UsageRecord], group_by: str, filters: dict[str, str] | None = None,
              since: float = 0, until: float | None = None) -> dict[str | None, tuple[Any, ...]]:
    totals: dict[str | None, list[Any]] = {}
    for r in records:
        if r.ts < since or (until is not None and r.ts >= until) or not _matches(r, filters or {}):
            continue
        total = totals.setdefault(_group_of(r, group_by), [0, 0, 0, 0, 0, Decimal(0), 0.0])
        for i, value in enumerate((1, int(r.status >= 400), r.prompt_tokens, r.completion_tokens,
                                   r.cached_tokens, r.cost_usd, r.latency_ms)):
            total[i] += value
    return {group: (*t[:6], round(t[6] / t[0], 6)) for group, t in totals.items()}


def _random_ledger(count: int, seed: int = 7) -> list[UsageRecord]:
    """Requests spread over three days, with every dimension sometimes absent."""
    rng = random.Random(seed)
    keys = [("aaaaaaaa", "prod-app-chat"), ("bbbbbbbb", "staging-rag-worker"), (None, None)]
    start = datetime(2026, 11, 22, 22, tzinfo=UTC).timestamp()

    def maybe(*values: str) -> str | None:
        return rng.choice([*values, None])

    records = []
    for i in range(count):
        key_id, key_name = rng.choice(keys)
        records.append(usage(
            f"q{i}", ts=start + rng.uniform(0, 3 * 86400), key_id=key_id, key_name=key_name,
            team=maybe("payments", "search"), env=maybe("prod", "staging"),
            feature=maybe("checkout", "refunds"), route=maybe("cheap", "smart"),
            model_requested=maybe("gpt-4o-mini", "gpt-4o"),
            model_served=maybe("gpt-4o-mini-2024-07-18"), provider=maybe("openai", "azure"),
            endpoint=rng.choice(["chat.completions", "embeddings", "responses"]),
            status=rng.choice([200, 200, 200, 400, 429, 502]),
            prompt_tokens=rng.randrange(2000), completion_tokens=rng.randrange(500),
            cached_tokens=rng.randrange(100),
            cost_usd=Decimal(rng.randrange(10**7)) * Decimal("1e-9"),
            latency_ms=rng.uniform(1, 3000)))
    return records


ROLLUP_LEDGER = _random_ledger(600)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def rolled_up(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """A database holding ROLLUP_LEDGER, written in batches of varied size, shared by the tests
    that only read it; yields `call(body)`, which runs `body` on a store opened on it."""
    async def fill(s: SQLStore) -> None:
        for start, end in ((0, 1), (1, 50), (50, 51), (51, 300), (300, 600)):
            await s.insert_usage(ROLLUP_LEDGER[start:end])

    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('rollups') / 'keystead.db'}"
        else:
            url = stack.enter_context(pg.fresh_database())
        run(SQLStore(url), fill)
        yield lambda body: run(SQLStore(url), body)


@pytest.mark.parametrize("group_by", GROUPS)
def test_rollups_equal_the_ledger_totals(rolled_up, group_by):
    rows = rolled_up(lambda s: s.query_usage(group_by, since=0))
    assert _rows(rows) == _expected(ROLLUP_LEDGER, group_by)
    if group_by in ("hour", "day"):
        assert [r.group for r in rows] == sorted(r.group for r in rows)
    else:
        assert [r.cost_usd for r in rows] == sorted((r.cost_usd for r in rows), reverse=True)


@pytest.mark.parametrize(("group_by", "filters"), [
    ("model", {"key": "aaaaaaaa"}),  # a key by its id
    ("model", {"key": "staging-rag-worker"}),  # or by its name
    ("day", {"team": "payments", "env": "prod"}),
    ("hour", {"feature": "checkout", "endpoint": "chat.completions"}),
    ("key", {"model": "gpt-4o-mini-2024-07-18", "provider": "azure"}),
    ("route", {"route": "smart"}),
    ("team", {"team": ""}),  # '' is "no team"
    ("provider", {"key": "no-such-key"}),
])
def test_rollups_filtered_equal_the_ledger(rolled_up, group_by, filters):
    rows = rolled_up(lambda s: s.query_usage(group_by, since=0, filters=filters))
    assert _rows(rows) == _expected(ROLLUP_LEDGER, group_by, filters)


def test_rollups_in_a_window_of_hours(rolled_up):
    since = datetime(2026, 11, 23, 5, 30, tzinfo=UTC).timestamp()  # from 05:00
    until = datetime(2026, 11, 24, 3, 10, tzinfo=UTC).timestamp()  # up to 04:00, excluded
    rows = rolled_up(lambda s: s.query_usage("hour", since=since, until=until))
    assert rows[0].group == "2026-11-23T05:00Z"
    assert rows[-1].group == "2026-11-24T03:00Z"
    assert _rows(rows) == _expected(ROLLUP_LEDGER, "hour", since=since - 1800, until=until + 3000)


def test_rollups_merge_a_group_across_batches_into_one_row(store):
    """Same hour and dimensions: one rollup row, whatever the batches; '' for absent dims."""
    hour = datetime(2026, 11, 23, 14, tzinfo=UTC).timestamp()
    same = [usage(f"s{i}", ts=hour + i * 60, key_id="aaaaaaaa", key_name="prod-app-chat",
                  model_requested="gpt-4o", prompt_tokens=10, cost_usd=Decimal("0.000001"),
                  status=500 if i % 3 == 0 else 200, latency_ms=10.0 * i)
            for i in range(30)]
    next_hour = usage("n1", ts=hour + 3600, key_id="aaaaaaaa", key_name="prod-app-chat",
                      model_requested="gpt-4o")

    async def body(s: SQLStore) -> list[Any]:
        await s.insert_usage(same[:10])
        await s.insert_usage([*same[10:25], next_hour])
        await s.insert_usage(same[25:])
        async with s.engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(
                sa.select(schema.usage_hourly).order_by(schema.usage_hourly.c.hour))).all()]

    first, second = run(store, body)
    assert first == (int(hour), "aaaaaaaa", "prod-app-chat", "", "", "", "", "gpt-4o", "",
                     "chat.completions", 30, 10, 300, 0, 0, 30_000, pytest.approx(4350.0),
                     0, 0, 0, 0, 0, 0, 0)
    assert second[0] == int(hour) + 3600 and second[10] == 1


def test_rollups_sum_what_routing_did(store):
    """Retries, fallbacks, cache hits and their savings, structured-output checks and degraded
    answers, per route: what `keystead usage --by route` reports."""
    hour = datetime(2026, 11, 23, 14, tzinfo=UTC).timestamp()
    rows = [
        usage("a", ts=hour, route="support", attempts=3, fallback=True, schema_valid=True),
        usage("b", ts=hour + 1, route="support", cache="hit", saved_usd=Decimal("0.002")),
        usage("c", ts=hour + 2, route="support", schema_valid=False, degraded="cached"),
        usage("d", ts=hour + 3, route="support", cache="miss"),
    ]

    async def body(s: SQLStore) -> Any:
        await s.insert_usage(rows)
        return await s.query_usage("route", since=0), await s.recent_usage(10)

    report, ledger = run(store, body)
    (row,) = report
    assert (row.group, row.requests, row.retries, row.fallbacks, row.cache_hits,
            row.saved_usd, row.schema_checked, row.schema_invalid, row.degraded) == (
        "support", 4, 2, 1, 1, Decimal("0.002"), 2, 1, 1)
    by_id = {r.request_id: r for r in ledger}
    assert (by_id["a"].attempts, by_id["a"].fallback, by_id["b"].cache,
            by_id["b"].saved_usd, by_id["c"].degraded, by_id["c"].schema_valid) == (
        3, True, "hit", Decimal("0.002"), "cached", False)


def test_a_failed_batch_leaves_neither_ledger_nor_rollups(store):
    broken = usage("bad", endpoint=None)  # NOT NULL in the ledger

    async def body(s: SQLStore) -> tuple[list[Any], list[Any]]:
        await s.insert_usage(LEDGER[:2])
        with pytest.raises(InvalidRecord):  # refused values, told apart from an outage
            await s.insert_usage([LEDGER[2], broken])
        return await s.recent_usage(10), await s.query_usage("key", since=0)

    ledger, rows = run(store, body)
    assert [r.request_id for r in ledger] == ["r2", "r1"]
    assert [(r.group, r.requests) for r in rows] == [("prod-app-chat", 2)]


def test_values_the_database_or_its_driver_refuses_are_invalid_records(store):
    # PostgreSQL refuses a name longer than its column (22001) and asyncpg an integer where a
    # string goes; SQLite stores both. Either way the batch is all or nothing.
    too_long = usage("long", key_id="aaaaaaaa", key_name="k" * 300)
    wrong_type = usage("typed", key_id=12345678)

    async def body(s: SQLStore) -> tuple[list[str], list[Any]]:
        for broken in (too_long, wrong_type):
            if s.dialect == "postgresql":
                with pytest.raises(InvalidRecord):
                    await s.insert_usage([LEDGER[0], broken])
        return ([r.request_id for r in await s.recent_usage(10)],
                await s.query_usage("key", since=0))

    ledger, rows = run(store, body)
    assert ledger == []
    assert rows == []


def test_unknown_filter_is_an_error(store):
    async def body(s: SQLStore) -> None:
        with pytest.raises(ValueError, match="colour"):
            await s.query_usage("key", since=0, filters={"colour": "blue"})  # type: ignore[dict-item]

    run(store, body)


# --- spend --------------------------------------------------------------------------------------


def test_spend_nanousd_per_scope(store):
    async def body(s: SQLStore) -> dict[str, int]:
        await s.insert_usage(ROLLUP_LEDGER)
        since = ROLLUP_LEDGER[100].ts
        return {
            "key": await s.spend_nanousd("key", "aaaaaaaa", since),
            "team": await s.spend_nanousd("team", "payments", since),
            "env": await s.spend_nanousd("env", "staging", since),
            "all_time": await s.spend_nanousd("team", "payments", 0),
            "nobody": await s.spend_nanousd("key", "zzzzzzzz", 0),
            "future": await s.spend_nanousd("env", "prod", 4_000_000_000),
        }

    got = run(store, body)
    since = ROLLUP_LEDGER[100].ts

    def spend(field: str, value: str, start: float) -> int:
        return int(sum((r.cost_usd for r in ROLLUP_LEDGER
                        if getattr(r, field) == value and r.ts >= start), Decimal(0)) * 10**9)

    assert got["key"] == spend("key_id", "aaaaaaaa", since)
    assert got["team"] == spend("team", "payments", since)
    assert got["env"] == spend("env", "staging", since)
    assert got["all_time"] == spend("team", "payments", 0) > got["team"] > 0
    assert got["nobody"] == 0 and got["future"] == 0


# --- PostgreSQL: several processes on one database ----------------------------------------------


@pytest.fixture
def pg_url(migrated_pg: str) -> str:
    pg.truncate(migrated_pg)
    return migrated_pg


def test_concurrent_bumps_from_two_stores_on_postgresql(pg_url):
    """Two servers bumping one counter at once: every bump gets its own value."""
    async def main() -> tuple[list[int], int]:
        first, second = SQLStore(pg_url), SQLStore(pg_url)
        await asyncio.gather(first.open(), second.open())
        try:
            results = await asyncio.gather(*(s.bump_version("keys") for _ in range(15)
                                             for s in (first, second)))
            return sorted(results), await first.get_version("keys")
        finally:
            await asyncio.gather(first.close(), second.close())

    results, final = asyncio.run(main())
    assert results == list(range(1, 31))
    assert final == 30


def test_concurrent_usage_batches_from_two_stores_on_postgresql(pg_url):
    """Overlapping rollup rows written by two servers at once: no lost update, no deadlock."""
    async def main() -> list[Any]:
        first, second = SQLStore(pg_url), SQLStore(pg_url)
        await asyncio.gather(first.open(), second.open())
        try:
            batches = [ROLLUP_LEDGER[i:i + 40] for i in range(0, len(ROLLUP_LEDGER), 40)]
            await asyncio.gather(*(store.insert_usage(batch)
                                   for store, batch in zip(itertools.cycle((first, second)),
                                                           batches, strict=False)))
            return await first.query_usage("model", since=0)
        finally:
            await asyncio.gather(first.close(), second.close())

    assert _rows(asyncio.run(main())) == _expected(ROLLUP_LEDGER, "model")


def test_two_stores_migrating_a_new_postgresql_database_at_once():
    """Replicas starting together: the advisory lock makes the second wait, then find it done."""
    async def main(url: str) -> list[int]:
        stores = [SQLStore(url) for _ in range(3)]
        await asyncio.gather(*(s.open() for s in stores))
        try:
            return [await stores[0].bump_version("keys"), await stores[2].get_version("keys")]
        finally:
            await asyncio.gather(*(s.close() for s in stores))

    with pg.fresh_database() as url:
        assert asyncio.run(main(url)) == [1, 1]
