"""The demo's key belongs to the demo team, which the demo makes itself (a key's team must
exist); its directory starts fresh or is kept, and its files are its owner's only."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import click
import pytest

from cli.helpers import Project
from keystead.cli.demo_runtime import ensure_demo_key, lock_directory, prepare_directory
from keystead.config.load import load_config
from keystead.runtime import Runtime


def test_the_demo_key_and_its_team(project: Project) -> None:
    async def main() -> None:
        runtime = await Runtime.open(load_config(project.config, environ={
            "KEYSTEAD_MASTER_KEY": project.master_key}), serving=False)
        try:
            first = await ensure_demo_key(runtime, project.dir)
            record = runtime.keys.identify(b"Bearer " + first.encode())
            assert (record.name, record.team) == ("dev-demo-app-01", "demo")
            team = await runtime.store.get_team("demo")
            assert team is not None and team.description == "created by keystead demo"
            assert await ensure_demo_key(runtime, project.dir) == first  # kept while it works
            # A lost key file means a new key, on the team that exists already.
            (project.dir / "demo.key").unlink()
            second = await ensure_demo_key(runtime, project.dir)
            assert second != first
            assert runtime.keys.identify(b"Bearer " + second.encode()).name == "dev-demo-app-02"
            assert [t.name for t in await runtime.store.list_teams()] == ["demo"]
        finally:
            await runtime.close()

    asyncio.run(main())


def test_a_fresh_start_removes_the_demos_files_and_nothing_else(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    directory.mkdir()
    for name in ("master.key", "admin.token", "demo.key", "keystead-demo.db",
                 "keystead-demo.db-wal", "notes.txt"):
        (directory / name).write_text("x")
    said = prepare_directory(directory, fresh=True)
    assert said.startswith("fresh:")
    assert [p.name for p in directory.iterdir()] == ["notes.txt"]  # not the demo's: kept


def test_keep_reuses_the_last_run_and_makes_its_old_files_private(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    assert prepare_directory(directory, fresh=False).startswith("new:")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    old = directory / "admin.token"
    old.write_text("ksa_old\n")
    old.chmod(0o644)  # as an older keystead left it
    assert prepare_directory(directory, fresh=False).startswith("kept from the last run")
    assert old.read_text() == "ksa_old\n" and stat.S_IMODE(old.stat().st_mode) == 0o600


def test_the_demo_key_file_is_private_from_its_creation(project: Project) -> None:
    async def main() -> None:
        runtime = await Runtime.open(load_config(project.config, environ={
            "KEYSTEAD_MASTER_KEY": project.master_key}), serving=False)
        try:
            previous = os.umask(0)  # even a process that would make it world-writable
            try:
                await ensure_demo_key(runtime, project.dir)
            finally:
                os.umask(previous)
        finally:
            await runtime.close()

    asyncio.run(main())
    assert stat.S_IMODE((project.dir / "demo.key").stat().st_mode) == 0o600


def test_one_demo_at_a_time_on_a_directory(tmp_path: Path) -> None:
    held = lock_directory(tmp_path / "demo")
    try:
        with pytest.raises(click.ClickException, match="another keystead demo is using"):
            lock_directory(tmp_path / "demo")
    finally:
        os.close(held)
    os.close(lock_directory(tmp_path / "demo"))  # free again once the first is gone
    assert stat.S_IMODE((tmp_path / "demo" / "demo.lock").stat().st_mode) == 0o600
