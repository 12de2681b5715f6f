"""The store on SQLAlchemy Core (async): SQLite by default, the same code for PostgreSQL later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from keystead.state import schema as t
from keystead.state.records import KeyRecord, ProviderRecord, SealedRecord, UsageRecord
from keystead.state.store import DuplicateName, GroupBy, UsageRow

__all__ = ["SCHEMA_HEAD", "SQLStore", "async_url"]

# The newest migration. When the database is already there, Alembic (a fifth of the start-up
# time) is not even imported; a test keeps this equal to the migrations' head.
SCHEMA_HEAD = "0002"

_NANO = Decimal("1e-9")
_MIGRATIONS = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    return url


def _key_from_row(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row.id, name=row.name, key_hash=row.key_hash, env=row.env, team=row.team,
        owner=row.owner, description=row.description,
        models=tuple(row.models) if row.models is not None else None,
        endpoints=tuple(row.endpoints) if row.endpoints is not None else None,
        max_tokens=row.max_tokens, max_body_bytes=row.max_body_bytes,
        created_at=row.created_at, expires_at=row.expires_at, revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason, last_used_at=row.last_used_at,
        disabled_at=row.disabled_at,
    )


def _key_values(key: KeyRecord) -> dict[str, Any]:
    values = {name: getattr(key, name) for name in KeyRecord.__slots__}
    for name in ("models", "endpoints"):
        if values[name] is not None:
            values[name] = list(values[name])
    return values


class SQLStore:
    def __init__(self, url: str):
        self.url = url
        self._engine: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()  # SQLite has one writer; queue ours instead of failing

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("store is not open")
        return self._engine

    async def open(self) -> None:
        url = async_url(self.url)
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._engine = create_async_engine(url)
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
        async with self._engine.begin() as conn:
            if await _schema_version(conn) != SCHEMA_HEAD:
                await conn.run_sync(_upgrade)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def _write(self, statement: Any, params: Any = None) -> sa.CursorResult[Any]:
        async with self._write_lock, self.engine.begin() as conn:
            result: sa.CursorResult[Any] = await conn.execute(statement, params)
            return result

    async def _read(self, statement: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(statement)).fetchall())

    # keys
    async def insert_key(self, key: KeyRecord) -> None:
        try:
            await self._write(t.keys.insert().values(**_key_values(key)))
        except IntegrityError:
            raise DuplicateName(key.name) from None

    async def get_key(self, key_id: str) -> KeyRecord | None:
        rows = await self._read(sa.select(t.keys).where(t.keys.c.id == key_id))
        return _key_from_row(rows[0]) if rows else None

    async def find_key_by_name(self, name: str) -> KeyRecord | None:
        rows = await self._read(sa.select(t.keys).where(t.keys.c.name == name))
        return _key_from_row(rows[0]) if rows else None

    async def list_keys(self) -> list[KeyRecord]:
        rows = await self._read(sa.select(t.keys).order_by(t.keys.c.name))
        return [_key_from_row(r) for r in rows]

    async def update_key(self, key_id: str, **changes: Any) -> KeyRecord | None:
        for name in ("models", "endpoints"):
            if changes.get(name) is not None:
                changes[name] = list(changes[name])
        await self._write(t.keys.update().where(t.keys.c.id == key_id).values(**changes))
        return await self.get_key(key_id)

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        if not last_used:
            return
        statement = (t.keys.update().where(t.keys.c.id == sa.bindparam("kid"))
                     .values(last_used_at=sa.bindparam("ts")))
        await self._write(statement, [{"kid": k, "ts": ts} for k, ts in last_used.items()])

    # providers
    async def insert_provider(self, provider: ProviderRecord) -> None:
        try:
            await self._write(t.providers.insert().values(
                name=provider.name, type=provider.type, base_url=provider.base_url,
                api_key_ref=provider.api_key_ref, models=list(provider.models),
                deployments=dict(provider.deployments), api_version=provider.api_version,
                supports_responses=provider.supports_responses, created_at=provider.created_at,
            ))
        except IntegrityError:
            raise DuplicateName(provider.name) from None

    async def list_providers(self) -> list[ProviderRecord]:
        rows = await self._read(sa.select(t.providers).order_by(t.providers.c.name))
        return [
            ProviderRecord(name=r.name, type=r.type, base_url=r.base_url, api_key_ref=r.api_key_ref,
                           models=tuple(r.models), deployments=dict(r.deployments),
                           api_version=r.api_version, supports_responses=r.supports_responses,
                           created_at=r.created_at)
            for r in rows
        ]

    async def delete_provider(self, name: str) -> bool:
        result = await self._write(t.providers.delete().where(t.providers.c.name == name))
        return bool(result.rowcount)

    # vault
    async def put_secret(self, sealed: SealedRecord) -> None:
        values = {"wrapped_key": sealed.wrapped_key, "ciphertext": sealed.ciphertext,
                  "master_key_id": sealed.master_key_id, "updated_at": time.time()}
        async with self._write_lock, self.engine.begin() as conn:
            updated = await conn.execute(
                t.vault_secrets.update().where(t.vault_secrets.c.id == sealed.id).values(**values))
            if not updated.rowcount:
                await conn.execute(t.vault_secrets.insert().values(id=sealed.id, **values))

    async def add_secret(self, sealed: SealedRecord) -> bool:
        try:
            await self._write(t.vault_secrets.insert().values(
                id=sealed.id, wrapped_key=sealed.wrapped_key, ciphertext=sealed.ciphertext,
                master_key_id=sealed.master_key_id, updated_at=time.time()))
        except IntegrityError:
            return False
        return True

    async def replace_secrets(self, sealed: Sequence[SealedRecord]) -> None:
        if not sealed:
            return
        statement = (t.vault_secrets.update().where(t.vault_secrets.c.id == sa.bindparam("sid"))
                     .values(wrapped_key=sa.bindparam("wrapped"), ciphertext=sa.bindparam("ct"),
                             master_key_id=sa.bindparam("mkid"), updated_at=time.time()))
        await self._write(statement, [{"sid": s.id, "wrapped": s.wrapped_key, "ct": s.ciphertext,
                                       "mkid": s.master_key_id} for s in sealed])

    async def get_secret(self, secret_id: str) -> SealedRecord | None:
        rows = await self._read(sa.select(t.vault_secrets).where(t.vault_secrets.c.id == secret_id))
        return _sealed(rows[0]) if rows else None

    async def list_secrets(self) -> list[SealedRecord]:
        return [_sealed(r) for r in await self._read(sa.select(t.vault_secrets))]

    async def delete_secret(self, secret_id: str) -> None:
        await self._write(t.vault_secrets.delete().where(t.vault_secrets.c.id == secret_id))

    # versions
    async def get_version(self, name: str) -> int:
        rows = await self._read(sa.select(t.meta.c.value).where(t.meta.c.name == name))
        return int(rows[0][0]) if rows else 0

    async def bump_version(self, name: str) -> int:
        async with self._write_lock, self.engine.begin() as conn:
            updated = await conn.execute(
                t.meta.update().where(t.meta.c.name == name).values(value=t.meta.c.value + 1))
            if not updated.rowcount:
                await conn.execute(t.meta.insert().values(name=name, value=1))
            value = (await conn.execute(
                sa.select(t.meta.c.value).where(t.meta.c.name == name))).scalar_one()
        return int(value)

    # usage
    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        if records:
            await self._write(t.usage.insert(), [_usage_values(r) for r in records])

    async def query_usage(self, group_by: GroupBy, since: float,
                          until: float | None = None) -> list[UsageRow]:
        u = t.usage.c
        group: Any
        if group_by == "day":
            if self.engine.dialect.name == "sqlite":
                group = sa.func.strftime("%Y-%m-%d", u.ts, "unixepoch")
            else:
                group = sa.func.to_char(sa.func.to_timestamp(u.ts) .op("AT TIME ZONE")("UTC"),
                                        "YYYY-MM-DD")
        else:
            group = {"key": u.key_name, "team": u.team, "model": u.model_served,
                     "feature": u.feature, "env": u.env, "provider": u.provider,
                     "endpoint": u.endpoint}[group_by]
        statement = (
            sa.select(
                group.label("grp"),
                sa.func.count().label("requests"),
                sa.func.sum(sa.case((u.status >= 400, 1), else_=0)).label("errors"),
                sa.func.coalesce(sa.func.sum(u.prompt_tokens), 0),
                sa.func.coalesce(sa.func.sum(u.completion_tokens), 0),
                sa.func.coalesce(sa.func.sum(u.cached_tokens), 0),
                sa.func.coalesce(sa.func.sum(u.cost_nanousd), 0),
                sa.func.coalesce(sa.func.avg(u.latency_ms), 0.0),
            )
            .where(u.ts >= since)
            .group_by(group)
            .order_by(sa.func.sum(u.cost_nanousd).desc(), group)
        )
        if until is not None:
            statement = statement.where(u.ts < until)
        return [
            UsageRow(group=row[0], requests=int(row[1]), errors=int(row[2] or 0),
                     prompt_tokens=int(row[3]), completion_tokens=int(row[4]),
                     cached_tokens=int(row[5]), cost_usd=Decimal(int(row[6])) * _NANO,
                     avg_latency_ms=float(row[7]))
            for row in await self._read(statement)
        ]

    async def recent_usage(self, limit: int, key_id: str | None = None) -> list[UsageRecord]:
        statement = sa.select(t.usage).order_by(t.usage.c.id.desc()).limit(limit)
        if key_id is not None:
            statement = statement.where(t.usage.c.key_id == key_id)
        return [_usage_from_row(r) for r in await self._read(statement)]


def _sealed(row: Any) -> SealedRecord:
    return SealedRecord(id=row.id, wrapped_key=bytes(row.wrapped_key),
                        ciphertext=bytes(row.ciphertext), master_key_id=row.master_key_id)


_USAGE_FIELDS = tuple(f for f in UsageRecord.__slots__ if f != "cost_usd")


def _usage_values(record: UsageRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in _USAGE_FIELDS}
    values["cost_nanousd"] = int((record.cost_usd / _NANO).to_integral_value())
    return values


def _usage_from_row(row: Any) -> UsageRecord:
    values = {name: getattr(row, name) for name in _USAGE_FIELDS}
    return UsageRecord(cost_usd=Decimal(int(row.cost_nanousd)) * _NANO, **values)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


async def _schema_version(conn: Any) -> str | None:
    """The database's Alembic revision, or None for a new database."""
    if not await conn.run_sync(lambda c: sa.inspect(c).has_table("alembic_version")):
        return None
    value = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
    return str(value) if value is not None else None


def _upgrade(connection: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
