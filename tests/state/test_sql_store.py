"""SQLStore against a real database (SQLite in tmp_path).

Every test takes the `store` fixture (an unopened store on an empty, migrated database) or
`fresh_store` (a database never opened), and runs its body with `run(store, body)`, which opens
the store (migrations included), awaits the body and closes the store, all in one event loop.
A PostgreSQL store plugs in as one more param of both fixtures.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from keystead.state.records import KeyRecord, ProviderRecord, SealedRecord, UsageRecord
from keystead.state.sql_store import SQLStore, async_url
from keystead.state.store import DuplicateName
from support import with_open_store

T = TypeVar("T")


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory) -> Path:
    """An empty, migrated SQLite file; copying it is faster than migrating for every test."""
    path = tmp_path_factory.mktemp("template") / "keystead.db"
    run(SQLStore(f"sqlite:///{path}"), lambda s: s.get_version("keys"))
    return path


@pytest.fixture(params=["sqlite"])
def fresh_store(request, tmp_path) -> SQLStore:
    """A store on a database that has never been opened (no schema yet)."""
    if request.param == "sqlite":
        return SQLStore(f"sqlite:///{tmp_path / 'state' / 'keystead.db'}")
    raise NotImplementedError(request.param)


@pytest.fixture(params=["sqlite"])
def store(request, tmp_path, migrated_sqlite) -> SQLStore:
    """A store on an empty database at the latest migration."""
    if request.param == "sqlite":
        path = tmp_path / "keystead.db"
        shutil.copyfile(migrated_sqlite, path)
        return SQLStore(f"sqlite:///{path}")
    raise NotImplementedError(request.param)


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
    async def body(s: SQLStore) -> tuple[set[str], list[Any]]:
        async with s.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                       ).fetchall()
            indexes = await conn.run_sync(
                lambda c: {i["name"] for i in sa.inspect(c).get_indexes("usage")})
            columns = await conn.run_sync(lambda c: {
                table: {col["name"] for col in sa.inspect(c).get_columns(table)}
                for table in schema.metadata.tables})
        return tables, [version, indexes, columns]

    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from keystead.state import schema, sql_store

    tables, (version, indexes, columns) = run(fresh_store, body)
    assert {"keys", "providers", "vault_secrets", "meta", "usage", "alembic_version"} <= tables
    config = AlembicConfig()
    config.set_main_option("script_location", str(sql_store._MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert [tuple(row) for row in version] == [(head,)]
    assert head == sql_store.SCHEMA_HEAD, "bump SCHEMA_HEAD with every new migration"
    assert {"ix_usage_ts", "ix_usage_key_ts"} <= indexes
    # The migrations build exactly the tables the code describes in schema.py.
    for name, table in schema.metadata.tables.items():
        assert columns[name] == {c.name for c in table.columns}, name


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
               last_used_at=1_700_000_100.25)

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
    costs = [row.cost_usd for row in rows]
    assert costs == sorted(costs, reverse=True)


def test_query_usage_since_and_until(store):
    async def body(s: SQLStore) -> tuple[list[Any], list[Any], list[Any]]:
        await s.insert_usage(LEDGER)
        return (await s.query_usage("day", since=DAY2),
                await s.query_usage("day", since=0, until=DAY2),
                await s.query_usage("key", since=DAY2 + 100))

    after, before, none = run(store, body)
    assert [(r.group, r.requests) for r in after] == [("2026-11-21", 4)]
    assert [(r.group, r.requests) for r in before] == [("2026-11-20", 2)]
    assert none == []


def test_usage_row_as_dict_is_json_ready(store):
    rows = with_ledger(store, lambda s: s.query_usage("key", since=0))
    chat = by_group(rows)["prod-app-chat"].as_dict()
    assert chat == {"group": "prod-app-chat", "requests": 3, "errors": 0, "prompt_tokens": 600,
                    "completion_tokens": 90, "cached_tokens": 10, "cost_usd": "0.000000060",
                    "avg_latency_ms": 200.0}


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
    import sqlite3

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
