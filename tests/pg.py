"""Throwaway PostgreSQL databases for tests.

The server is KEYSTEAD_TEST_PG_URL (default: postgres@127.0.0.1:5432, trust auth, as in CI).
CI always has PostgreSQL, so when it is down the tests that need it fail with a clear message
instead of skipping silently; KEYSTEAD_TEST_SKIP_PG=1 turns that into a skip on a laptop.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

__all__ = ["admin_url", "database_url", "fresh_database", "pg_available", "require_pg",
           "truncate"]

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    """The maintenance database new databases are created from (sync form, postgresql://)."""
    return os.environ.get("KEYSTEAD_TEST_PG_URL", DEFAULT_URL)


def database_url(name: str) -> str:
    """The URL of database `name` on the test server, as keystead's config spells it."""
    return make_url(admin_url()).set(database=name).render_as_string(hide_password=False)


def _async(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _autocommit(url: str, *statements: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction.
    engine = create_async_engine(_async(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@cache
def _probe() -> str | None:
    """None when the server answers, else why not (asked once per test session)."""

    async def ping() -> None:
        engine = create_async_engine(_async(admin_url()), poolclass=NullPool,
                                     connect_args={"timeout": 3})
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        asyncio.run(ping())
    except Exception as error:  # any failure to connect means "not available"
        return f"{type(error).__name__}: {error}"
    return None


def pg_available() -> bool:
    return _probe() is None


def require_pg() -> None:
    """Fail (or skip, with KEYSTEAD_TEST_SKIP_PG=1) when the test server does not answer."""
    problem = _probe()
    if problem is None:
        return
    url = make_url(admin_url()).render_as_string(hide_password=True)
    message = f"PostgreSQL is not reachable at {url} ({problem})."
    if os.environ.get("KEYSTEAD_TEST_SKIP_PG") == "1":
        pytest.skip(message)
    pytest.fail(f"{message} Start it, point KEYSTEAD_TEST_PG_URL at one, or set "
                "KEYSTEAD_TEST_SKIP_PG=1 to skip the PostgreSQL tests.", pytrace=False)


def create_database(prefix: str = "keystead_t") -> str:
    """A new, empty, uniquely named database; returns its URL."""
    require_pg()
    name = f"{prefix}_{secrets.token_hex(6)}"
    asyncio.run(_autocommit(admin_url(), f'CREATE DATABASE "{name}"'))
    return database_url(name)


def drop_database(url: str) -> None:
    name = make_url(url).database
    assert name and name != make_url(admin_url()).database
    # A store left open (a failed test) would make DROP DATABASE wait forever: cut it off.
    asyncio.run(_autocommit(
        admin_url(),
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        f'DROP DATABASE IF EXISTS "{name}"',
    ))


@contextmanager
def fresh_database(prefix: str = "keystead_t") -> Iterator[str]:
    """A new database for the duration of the block, dropped afterwards; yields its URL."""
    url = create_database(prefix)
    try:
        yield url
    finally:
        drop_database(url)


def truncate(url: str, keep: tuple[str, ...] = ("alembic_version",)) -> None:
    """Empty every table of the database but `keep`.

    DELETE, not TRUNCATE: on the few rows a test leaves it is several times faster (TRUNCATE
    swaps every table's files). Id sequences go on counting; no test relies on their values.
    """

    async def main() -> None:
        engine = create_async_engine(_async(url), poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                tables = (await conn.execute(sa.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                ))).scalars().all()
                for table in sorted(tables):
                    if table not in keep:
                        await conn.execute(sa.text(f'DELETE FROM "{table}"'))
        finally:
            await engine.dispose()

    asyncio.run(main())
