"""Store fixtures: every store test runs on SQLite and on PostgreSQL.

`store` is an unopened store on an empty database at the latest migration; `fresh_store` one on
a database that has never been opened (no schema yet). Migrating takes a while, so SQLite tests
copy a migrated file and PostgreSQL tests share one migrated database, emptied before each test.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import pg
from keystead.state.sql_store import SQLStore

BACKENDS = ["sqlite", "postgresql"]


def _migrate(url: str) -> None:
    async def main() -> None:
        store = SQLStore(url)
        await store.open()
        await store.close()

    asyncio.run(main())


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated SQLite file; copying it is faster than migrating for every test."""
    path = tmp_path_factory.mktemp("template") / "keystead.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def migrated_pg() -> Iterator[str]:
    """The URL of a migrated PostgreSQL database shared by the session's tests."""
    with pg.fresh_database("keystead_t") as url:
        _migrate(url)
        yield url


@pytest.fixture(params=BACKENDS)
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStore]:
    """A store on a database that has never been opened (no schema yet)."""
    if request.param == "sqlite":
        yield SQLStore(f"sqlite:///{tmp_path / 'state' / 'keystead.db'}")
    else:
        with pg.fresh_database("keystead_t") as url:
            yield SQLStore(url)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SQLStore:
    """A store on an empty database at the latest migration."""
    if request.param == "sqlite":
        path = tmp_path / "keystead.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        return SQLStore(f"sqlite:///{path}")
    pg.require_pg()
    url: str = request.getfixturevalue("migrated_pg")
    pg.truncate(url)
    return SQLStore(url)
