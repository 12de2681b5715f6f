"""Fixtures of the CLI tests: each test gets its own directory, config and SQLite file.

`load_config` copies `.env` values into `os.environ`, and `serve` reconfigures the root logger;
both are restored after each test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.helpers import CONFIG, Project, Remote, serving
from keystead.vault.envelope import MasterKey


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for var in [v for v in os.environ if v.startswith("KEYSTEAD_")]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    saved_env = dict(os.environ)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield
    os.environ.clear()
    os.environ.update(saved_env)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    directory = tmp_path / "project"
    directory.mkdir()
    config = directory / "keystead.yaml"
    config.write_text(CONFIG)
    return Project(directory, config, MasterKey.generate_text())


@pytest.fixture
def remote(project: Project) -> Iterator[Remote]:
    """A gateway serving the project's store; `remote.run(...)` is the CLI with --server."""
    with serving(project.loaded()) as running:
        yield running
