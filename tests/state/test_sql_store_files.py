"""The SQLite store's files hold sealed provider keys, key hashes and client IPs: readable by
their owner only, from the moment they exist, whatever the process umask."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from keystead.state.records import EventRecord
from keystead.state.sql_store import SQLStore


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual default: new files 0644
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes_while_open(path: Path) -> dict[str, int]:
    """The modes of the database and its -wal/-shm while a connection has written to it."""
    async def main() -> dict[str, int]:
        store = SQLStore(f"sqlite:///{path}")
        await store.open()
        try:
            await store.insert_event(EventRecord(kind="test", ts=1.0, actor="t", detail={}))
            return {p.name: _mode(p) for p in path.parent.iterdir()
                    if p.name.startswith(path.name)}
        finally:
            await store.close()

    return asyncio.run(main())


def test_a_new_database_and_its_wal_and_shm_are_0600(tmp_path: Path, open_umask: None) -> None:
    modes = _modes_while_open(tmp_path / "state" / "keystead.db")
    assert {"keystead.db", "keystead.db-wal", "keystead.db-shm"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o600)


def test_an_existing_world_readable_database_is_tightened_with_a_warning(
        tmp_path: Path, open_umask: None, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keystead.db"
    _modes_while_open(path)
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="keystead.store"):
        modes = _modes_while_open(path)
    assert modes == dict.fromkeys(modes, 0o600)
    assert any("readable by other local users (mode 644)" in r.getMessage()
               for r in caplog.records)


def test_an_owner_only_database_is_left_as_it_is(tmp_path: Path, open_umask: None,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keystead.db"
    _modes_while_open(path)
    os.chmod(path, 0o400 | 0o200)
    with caplog.at_level(logging.WARNING, logger="keystead.store"):
        _modes_while_open(path)
    assert _mode(path) == 0o600
    assert not caplog.records
