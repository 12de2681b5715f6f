"""The store on SQLAlchemy Core (async): the same code for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from keystead.state import schema as t
from keystead.state.ledger_rows import (
    LEDGER_INSERT,
    NANO,
    ROLLUP_UPSERT,
    ledger_row,
    refused_values,
    rollups,
    usage_from_row,
)
from keystead.state.records import (
    EventRecord,
    KeyRecord,
    Limits,
    ProviderKeyState,
    ProviderRecord,
    SealedRecord,
    TeamRecord,
    UsageRecord,
)
from keystead.state.sql_alerts import AlertTables
from keystead.state.store import (
    Dimension,
    DuplicateName,
    GroupBy,
    InvalidRecord,
    SpendScope,
    UsageRow,
)

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["SCHEMA_HEAD", "SQLStore", "async_url"]

log = logging.getLogger("keystead.store")

# The newest migration. When the database is already there, Alembic (a fifth of the start-up
# time) is not even imported; a test keeps this equal to the migrations' head.
SCHEMA_HEAD = "0009"

_MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key held while checking and upgrading the schema, so replicas starting
# together against a new database migrate one after the other instead of colliding.
_MIGRATION_LOCK = 0x6B65797374656164  # "keystead"
_HOUR = 3600
_DAY = 86400


def async_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    return url


def _limits_value(limits: Limits | None) -> dict[str, Any] | None:
    # NULL only for the default, so even a lone budget_period survives the round trip.
    if limits is None or limits == Limits():
        return None
    return limits.as_dict()


def _list_value(values: Iterable[str] | None) -> list[str] | None:
    return list(values) if values is not None else None


def _tuple(values: Sequence[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None


def _key_from_row(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row.id, name=row.name, key_hash=row.key_hash, env=row.env, team=row.team,
        owner=row.owner, description=row.description,
        models=_tuple(row.models), endpoints=_tuple(row.endpoints),
        max_tokens=row.max_tokens, max_body_bytes=row.max_body_bytes,
        created_at=row.created_at, expires_at=row.expires_at, revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason, last_used_at=row.last_used_at,
        disabled_at=row.disabled_at, limits=Limits.from_dict(row.limits),
        ip_allowlist=_tuple(row.ip_allowlist), credential_id=row.credential_id,
        rotated_at=row.rotated_at, previous_credential_id=row.previous_credential_id,
        previous_hash=row.previous_hash, previous_expires_at=row.previous_expires_at,
        cache=row.cache,
    )


def _json_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Record-typed changes (tuples, Limits) as the columns store them."""
    for name in ("models", "endpoints", "ip_allowlist"):
        if name in changes:
            changes[name] = _list_value(changes[name])
    if "limits" in changes:
        changes["limits"] = _limits_value(changes["limits"])
    return changes


def _key_values(key: KeyRecord) -> dict[str, Any]:
    return _json_changes({name: getattr(key, name) for name in KeyRecord.__slots__})


def _team_from_row(row: Any) -> TeamRecord:
    return TeamRecord(name=row.name, description=row.description, owner=row.owner,
                      limits=Limits.from_dict(row.limits), ip_allowlist=_tuple(row.ip_allowlist),
                      created_at=row.created_at)


def _team_values(team: TeamRecord) -> dict[str, Any]:
    return _json_changes({name: getattr(team, name) for name in TeamRecord.__slots__})


class SQLStore(AlertTables):
    def __init__(self, url: str, *, pool_size: int = 10):
        self.url = url
        self.pool_size = pool_size  # PostgreSQL connections kept open (as many again in bursts)
        self._engine: AsyncEngine | None = None
        # SQLite has one writer: queue ours instead of failing with "database is locked".
        # PostgreSQL takes row locks itself, so it gets no lock (None).
        self._write_lock: asyncio.Lock | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("store is not open")
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def open(self) -> None:
        url = async_url(self.url)
        options: dict[str, Any] = {}
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                _private_database(Path(path))
        else:
            # pre_ping: a server restart or a fail-over costs a reconnect, not a failed call.
            options = {"pool_size": self.pool_size, "max_overflow": self.pool_size,
                       "pool_pre_ping": True, "pool_recycle": 1800}
        engine = create_async_engine(url, **options)
        self._engine = engine
        try:
            if engine.dialect.name == "sqlite":
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
                self._write_lock = asyncio.Lock()
            else:
                self._write_lock = None
            async with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": _MIGRATION_LOCK})
                if await _schema_version(conn) != SCHEMA_HEAD:
                    await conn.run_sync(_upgrade)
        except BaseException:
            self._engine = None
            await engine.dispose()
            raise

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (behind the write lock on SQLite)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
        else:
            async with self._write_lock, self.engine.begin() as conn:
                yield conn

    async def _write(self, statement: Any, params: Any = None) -> sa.CursorResult[Any]:
        async with self._begin() as conn:
            result: sa.CursorResult[Any] = await conn.execute(statement, params)
            return result

    async def _read(self, statement: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(statement)).fetchall())

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that can take ON CONFLICT, in this database's dialect (imported here: the
        PostgreSQL dialect alone is a tenth of a SQLite CLI command's start-up)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

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
        if changes:
            await self._write(t.keys.update().where(t.keys.c.id == key_id)
                              .values(**_json_changes(changes)))
        return await self.get_key(key_id)

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        if not last_used:
            return
        statement = (t.keys.update().where(t.keys.c.id == sa.bindparam("kid"))
                     .values(last_used_at=sa.bindparam("ts")))
        await self._write(statement, [{"kid": k, "ts": ts} for k, ts in last_used.items()])

    # teams
    # events (audit entries, reminders)
    async def insert_event(self, event: EventRecord) -> None:
        await self._write(t.events.insert().values(
            ts=event.ts, kind=event.kind, key_id=event.key_id, actor=event.actor,
            detail=dict(event.detail)))

    async def list_events(self, limit: int = 100, key_id: str | None = None,
                          kind: str | None = None, since: float | None = None
                          ) -> list[EventRecord]:
        statement = sa.select(t.events).order_by(t.events.c.id.desc()).limit(limit)
        if key_id is not None:
            statement = statement.where(t.events.c.key_id == key_id)
        if kind is not None:
            statement = statement.where(t.events.c.kind == kind)
        if since is not None:
            statement = statement.where(t.events.c.ts >= since)
        return [EventRecord(kind=r.kind, ts=r.ts, key_id=r.key_id, actor=r.actor,
                            detail=dict(r.detail), id=int(r.id))
                for r in await self._read(statement)]

    async def insert_team(self, team: TeamRecord) -> None:
        try:
            await self._write(t.teams.insert().values(**_team_values(team)))
        except IntegrityError:
            raise DuplicateName(team.name) from None

    async def get_team(self, name: str) -> TeamRecord | None:
        rows = await self._read(sa.select(t.teams).where(t.teams.c.name == name))
        return _team_from_row(rows[0]) if rows else None

    async def list_teams(self) -> list[TeamRecord]:
        rows = await self._read(sa.select(t.teams).order_by(t.teams.c.name))
        return [_team_from_row(r) for r in rows]

    async def update_team(self, name: str, **changes: Any) -> TeamRecord | None:
        if changes:
            await self._write(t.teams.update().where(t.teams.c.name == name)
                              .values(**_json_changes(changes)))
        return await self.get_team(name)

    # providers
    async def insert_provider(self, provider: ProviderRecord) -> None:
        refs = provider.refs
        try:
            await self._write(t.providers.insert().values(
                name=provider.name, type=provider.type, base_url=provider.base_url,
                # The first key also where a gateway of the previous version looks for it.
                api_key_ref=refs[0] if refs else None,
                api_key_refs=list(provider.api_key_refs) if provider.api_key_refs else None,
                models=list(provider.models),
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
                           created_at=r.created_at, api_key_refs=tuple(r.api_key_refs or ()))
            for r in rows
        ]

    async def set_provider_keys(self, name: str, refs: Sequence[str]) -> bool:
        result = await self._write(t.providers.update().where(t.providers.c.name == name).values(
            api_key_ref=refs[0] if refs else None, api_key_refs=list(refs)))
        return bool(result.rowcount)

    async def delete_provider(self, name: str) -> bool:
        async with self._begin() as conn:
            await conn.execute(t.provider_key_states.delete().where(
                t.provider_key_states.c.provider == name))
            result = await conn.execute(t.providers.delete().where(t.providers.c.name == name))
        return bool(result.rowcount)

    async def list_provider_key_states(self) -> list[ProviderKeyState]:
        rows = await self._read(sa.select(t.provider_key_states).order_by(
            t.provider_key_states.c.provider, t.provider_key_states.c.since))
        return [ProviderKeyState(provider=r.provider, fingerprint=r.fingerprint, label=r.label,
                                 since=r.since, reason=r.reason, state=r.state) for r in rows]

    async def put_provider_key_state(self, state: ProviderKeyState) -> None:
        statement = self._insert(t.provider_key_states).values(
            provider=state.provider, fingerprint=state.fingerprint, label=state.label,
            state=state.state, since=state.since, reason=state.reason)
        await self._write(statement.on_conflict_do_update(
            index_elements=[t.provider_key_states.c.provider,
                            t.provider_key_states.c.fingerprint],
            set_={name: statement.excluded[name] for name in ("label", "state", "since",
                                                              "reason")}))

    async def delete_provider_key_state(self, provider: str, fingerprint: str) -> bool:
        table = t.provider_key_states
        result = await self._write(table.delete().where(
            (table.c.provider == provider) & (table.c.fingerprint == fingerprint)))
        return bool(result.rowcount)

    # vault
    async def put_secret(self, sealed: SealedRecord) -> None:
        # One upsert: an update-then-insert pair races between two writers on PostgreSQL.
        statement = self._insert(t.vault_secrets).values(
            id=sealed.id, wrapped_key=sealed.wrapped_key, ciphertext=sealed.ciphertext,
            master_key_id=sealed.master_key_id, updated_at=time.time())
        await self._write(statement.on_conflict_do_update(
            index_elements=[t.vault_secrets.c.id],
            set_={name: statement.excluded[name]
                  for name in ("wrapped_key", "ciphertext", "master_key_id", "updated_at")}))

    async def add_secret(self, sealed: SealedRecord) -> bool:
        # DO NOTHING rather than catching the IntegrityError: no error in PostgreSQL's log.
        result = await self._write(self._insert(t.vault_secrets).values(
            id=sealed.id, wrapped_key=sealed.wrapped_key, ciphertext=sealed.ciphertext,
            master_key_id=sealed.master_key_id, updated_at=time.time(),
        ).on_conflict_do_nothing(index_elements=[t.vault_secrets.c.id]))
        return bool(result.rowcount)

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
        # One atomic statement: processes bumping at once each get their own value.
        statement = self._insert(t.meta).values(name=name, value=1)
        statement = statement.on_conflict_do_update(
            index_elements=[t.meta.c.name], set_={"value": t.meta.c.value + 1})
        result = await self._write(statement.returning(t.meta.c.value))
        return int(result.scalar_one())

    # usage
    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        """The batch into the ledger and its sums into the hourly rollups, in one transaction.

        On the driver itself (`executemany` of two prepared statements): SQLAlchemy's per-row
        parameter processing cost more than the database's work on a batch of 500.
        """
        if not records:
            return
        ledger = [ledger_row(r) for r in records]
        sums = rollups(records, ledger)
        try:
            if self._write_lock is None:
                await self._insert_usage_asyncpg(ledger, sums)
            else:
                await self._insert_usage_sqlite(ledger, sums)
        except Exception as exc:
            if refused_values(exc):
                raise InvalidRecord(str(getattr(exc, "orig", None) or exc)) from exc
            raise

    async def _insert_usage_sqlite(self, ledger: list[tuple[Any, ...]],
                                   sums: list[tuple[Any, ...]]) -> None:
        async with self._begin() as conn:
            # The sqlite3 connection under aiosqlite opens its transaction before the first
            # INSERT; SQLAlchemy's begin() block commits it or rolls it back.
            driver = await _driver(conn)
            await driver.executemany(LEDGER_INSERT.sqlite, ledger)
            await driver.executemany(ROLLUP_UPSERT.sqlite, sums)

    async def _insert_usage_asyncpg(self, ledger: list[tuple[Any, ...]],
                                    sums: list[tuple[Any, ...]]) -> None:
        async with self.engine.connect() as conn:
            # asyncpg's own transaction: SQLAlchemy has not begun one on this connection (it
            # runs nothing here), so its rollback when the connection returns is a no-op.
            driver = await _driver(conn)
            try:
                async with driver.transaction():
                    await driver.executemany(LEDGER_INSERT.postgresql, ledger)
                    await driver.executemany(ROLLUP_UPSERT.postgresql, sums)
            except BaseException:
                if driver.is_closed():  # a broken connection goes, not back to the pool
                    await conn.invalidate()
                raise

    async def query_usage(self, group_by: GroupBy, since: float, until: float | None = None,
                          filters: Mapping[Dimension, str] | None = None) -> list[UsageRow]:
        h = t.usage_hourly.c
        group: Any
        if group_by == "hour":
            group = h.hour
        elif group_by == "day":
            # A literal, not a bound parameter: PostgreSQL only matches the GROUP BY expression
            # to the selected one when both are the same text.
            group = h.hour - h.hour % sa.literal_column(str(_DAY))
        else:
            group = _group_column(group_by)
        cost = sa.func.sum(h.cost_nanousd)
        statement = (
            sa.select(group.label("grp"), sa.func.sum(h.requests), sa.func.sum(h.errors),
                      sa.func.sum(h.prompt_tokens), sa.func.sum(h.completion_tokens),
                      sa.func.sum(h.cached_tokens), cost, sa.func.sum(h.latency_ms_sum),
                      *(sa.func.sum(h[name]) for name in _ROUTING_SUMS))
            .where(h.hour >= int(since // _HOUR) * _HOUR)
            .group_by(group)
        )
        if until is not None:
            statement = statement.where(h.hour < -int(-until // _HOUR) * _HOUR)  # rounded up
        for dimension, value in (filters or {}).items():
            if dimension == "key":
                statement = statement.where(sa.or_(h.key_id == value, h.key_name == value))
            else:
                statement = statement.where(_group_column(dimension) == value)
        if group_by in ("hour", "day"):
            statement = statement.order_by(group)
        else:
            statement = statement.order_by(cost.desc(), group)
        return [
            UsageRow(group=_group_label(group_by, row[0]), requests=int(row[1]),
                     errors=int(row[2]), prompt_tokens=int(row[3]), completion_tokens=int(row[4]),
                     cached_tokens=int(row[5]), cost_usd=Decimal(int(row[6])) * NANO,
                     avg_latency_ms=float(row[7]) / int(row[1]) if row[1] else 0.0,
                     retries=int(row[8]), fallbacks=int(row[9]), cache_hits=int(row[10]),
                     saved_usd=Decimal(int(row[11])) * NANO, schema_checked=int(row[12]),
                     schema_invalid=int(row[13]), degraded=int(row[14]))
            for row in await self._read(statement)
        ]

    async def spend_nanousd(self, scope: SpendScope, value: str, since: float) -> int:
        u = t.usage.c
        column = {"key": u.key_id, "team": u.team, "env": u.env}[scope]
        statement = (sa.select(sa.func.coalesce(sa.func.sum(u.cost_nanousd), 0))
                     .where(column == value, u.ts >= since))
        return int((await self._read(statement))[0][0])

    async def recent_usage(self, limit: int, key_id: str | None = None) -> list[UsageRecord]:
        statement = sa.select(t.usage).order_by(t.usage.c.id.desc()).limit(limit)
        if key_id is not None:
            statement = statement.where(t.usage.c.key_id == key_id)
        return [usage_from_row(r) for r in await self._read(statement)]


async def _driver(conn: AsyncConnection) -> Any:
    """The driver's own connection (aiosqlite's or asyncpg's) under a SQLAlchemy one."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("the store's connection has no driver connection")
    return driver


def _sealed(row: Any) -> SealedRecord:
    return SealedRecord(id=row.id, wrapped_key=bytes(row.wrapped_key),
                        ciphertext=bytes(row.ciphertext), master_key_id=row.master_key_id)


# --- hourly rollups -----------------------------------------------------------------------------

_ROUTING_SUMS = ("retries", "fallbacks", "cache_hits", "saved_nanousd", "schema_checked",
                 "schema_invalid", "degraded")


def _group_column(dimension: str) -> sa.ColumnElement[Any]:
    """The rollup column a report groups or filters by ("key" shows the key's name)."""
    h = t.usage_hourly.c
    if dimension == "key":
        return h.key_name
    if dimension in t.ROLLUP_DIMENSIONS:
        return h[dimension]
    raise ValueError(f"unknown usage dimension {dimension!r}")


def _group_label(group_by: GroupBy, value: Any) -> str | None:
    if group_by == "hour":
        return datetime.fromtimestamp(int(value), UTC).strftime("%Y-%m-%dT%H:00Z")
    if group_by == "day":
        return datetime.fromtimestamp(int(value), UTC).strftime("%Y-%m-%d")
    return str(value) if value else None  # '' is how the rollups store "none"


def _private_database(path: Path) -> None:
    """The database (sealed provider keys, key hashes, client IPs) readable by its owner only.

    A new one is created empty (a valid SQLite database) with mode 0600 before SQLite opens it:
    SQLite gives its `-wal` and `-shm` files the database file's mode, so they are private too.
    An existing one with group or other access is tightened to 0600, with a warning.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        os.close(fd)
        return
    for each in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            mode = stat.S_IMODE(each.stat().st_mode)
        except FileNotFoundError:
            continue
        if not mode & 0o077:
            continue
        try:
            os.chmod(each, mode & 0o700)
        except OSError as exc:
            log.warning("%s is readable by other local users (mode %o) and cannot be tightened "
                        "(%s): run `chmod 600 %s*` as its owner", each, mode, exc.strerror, path)
        else:
            log.warning("%s was readable by other local users (mode %o); set to %o", each, mode,
                        mode & 0o700)


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
