"""`keystead init`: the .env is private from its first byte, the admin token has its own prefix,
the config's mock never answers a real model's name, and KEYSTEAD_DATABASE_URL counts."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cli.helpers import invoke
from keystead.cli.setup import next_steps
from keystead.config.load import load_config
from keystead.config.template import CONFIG_TEMPLATE
from keystead.private_files import ADMIN_TOKEN_PREFIX


def _env_values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#"))


def test_the_env_file_is_created_0600_and_never_exists_with_a_wider_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way the process could create or open the .env is watched: os.open (whose mode at
    creation is read back from the new descriptor at once), io.open (what Path.write_text and
    open() use) and chmod. Under umask 0, a file created without 0600 in the creating call
    would be readable by all until a chmod: the race a local poller won 29 times in 30."""
    target = tmp_path / "site"
    env = target / ".env"
    created: list[tuple[int, int, int]] = []  # (flags, mode asked, mode at creation)
    written_by_io: list[str] = []
    chmods: list[str] = []
    real_open, real_io_open = os.open, io.open

    def watched_open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        existed = Path(os.fspath(path)).exists()
        fd = real_open(path, flags, mode, **kwargs)
        if Path(os.fspath(path)) == env and not existed:
            created.append((flags, mode, stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    def watched_io_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)) and Path(os.fspath(file)) == env \
                and any(flag in mode for flag in "wax+"):
            written_by_io.append(mode)
        return real_io_open(file, mode, *args, **kwargs)

    def watched_chmod(path: Any, *args: Any, **kwargs: Any) -> None:
        chmods.append(os.fspath(path))

    monkeypatch.setattr(os, "open", watched_open)
    monkeypatch.setattr(io, "open", watched_io_open)
    monkeypatch.setattr(os, "chmod", watched_chmod)
    monkeypatch.setattr(Path, "chmod", watched_chmod)
    previous = os.umask(0)
    try:
        result = invoke("init", str(target))
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output

    assert written_by_io == [] and chmods == []
    ((flags, mode, at_creation),) = created
    assert flags & os.O_CREAT and flags & os.O_EXCL  # never over an existing file
    assert mode == 0o600 and at_creation == 0o600
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_an_existing_env_is_never_replaced(
        tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("KEYSTEAD_MASTER_KEY=mine\n")
    result = invoke("init", str(tmp_path))
    assert result.exit_code == 0 and "never replaced" in result.stdout
    assert env.read_text() == "KEYSTEAD_MASTER_KEY=mine\n"


def test_the_admin_token_has_its_own_prefix(tmp_path: Path) -> None:
    assert invoke("init", str(tmp_path)).exit_code == 0
    token = _env_values(tmp_path / ".env")["KEYSTEAD_ADMIN_TOKEN"]
    assert ADMIN_TOKEN_PREFIX == "ksa_" and token.startswith("ksa_")
    assert not token.startswith("kst_")  # short-lived tokens' prefix
    assert len(token) > 40


def test_next_lines_create_the_team_before_the_key(tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path / "my site"))
    printed = result.stdout.split("Next:", 1)[1].splitlines()[1:]
    assert [line.strip() for line in printed if line.strip()] == next_steps(tmp_path / "my site")
    steps = next_steps(tmp_path / "my site")
    assert steps[0] == f"cd '{tmp_path / 'my site'}'"  # quoted: it has a space
    team = next(i for i, s in enumerate(steps) if s.startswith("keystead teams create myteam"))
    key = next(i for i, s in enumerate(steps) if "--team myteam" in s)
    assert team < key


def test_the_config_mock_serves_names_of_its_own(tmp_path: Path) -> None:
    assert invoke("init", str(tmp_path)).exit_code == 0
    config = load_config(tmp_path / "keystead.yaml", environ={}).config
    assert config.providers["mock"].models == ("mock-chat", "mock-embedding")
    assert "gpt-4o-mini" not in str(config.providers["mock"].models)


@pytest.mark.parametrize("url", ["sqlite:///elsewhere.db",
                                 "postgresql://keystead@db.internal/keystead"])
def test_keystead_database_url_overrides_the_file_init_writes(tmp_path: Path, url: str) -> None:
    # issue 13: the comment said it overrides, and the file's literal URL won silently.
    assert invoke("init", str(tmp_path)).exit_code == 0
    loaded = load_config(tmp_path / "keystead.yaml", environ={"KEYSTEAD_DATABASE_URL": url})
    assert loaded.config.database.url == url
    assert loaded.notes == ()
    default = load_config(tmp_path / "keystead.yaml", environ={})
    assert default.config.database.url == "sqlite:///keystead.db"


def test_a_file_that_overrules_keystead_database_url_says_so(tmp_path: Path) -> None:
    # The file an older `init` wrote: the variable cannot count, and loading says so.
    old = CONFIG_TEMPLATE.replace("${KEYSTEAD_DATABASE_URL:-sqlite:///keystead.db}",
                                  "sqlite:///keystead.db")
    assert old != CONFIG_TEMPLATE
    (tmp_path / "keystead.yaml").write_text(old)
    (tmp_path / ".env").write_text("KEYSTEAD_MASTER_KEY=x\nKEYSTEAD_ADMIN_TOKEN=y\n")
    loaded = load_config(tmp_path / "keystead.yaml",
                         environ={"KEYSTEAD_DATABASE_URL": "sqlite:///elsewhere.db"})
    assert loaded.config.database.url == "sqlite:///keystead.db"
    (note,) = loaded.notes
    assert note.startswith("KEYSTEAD_DATABASE_URL is set but ")
    assert "database.url itself, and the file wins: write `url: ${KEYSTEAD_DATABASE_URL}`" in note
    # A file that takes the value from the variable, or leaves the setting out: no note.
    for text in ("database: {url: '${KEYSTEAD_DATABASE_URL}'}\n", "server: {port: 1}\n"):
        (tmp_path / "keystead.yaml").write_text(text)
        assert load_config(tmp_path / "keystead.yaml", environ={
            "KEYSTEAD_DATABASE_URL": "sqlite:///elsewhere.db"}).notes == ()


def test_the_templates_monitoring_lines_uncommented_are_a_valid_config() -> None:
    import yaml

    from keystead.config.load import parse_config

    head, tail = CONFIG_TEMPLATE.split("# Watching it", 1)
    lines = [line[2:] for line in tail.splitlines()[1:] if line.startswith("# ")]
    raw = yaml.safe_load(head) | yaml.safe_load("\n".join(lines))
    env = {"KEYSTEAD_MASTER_KEY": "x", "KEYSTEAD_ADMIN_TOKEN": "y",
           "METRICS_TOKEN": "m" * 32, "ALERTS_SLACK_URL": "https://hooks.slack.com/services/T/B/X"}
    config = parse_config(raw, env, source="template")
    assert config.metrics.token is not None and config.checks.every == "5m"
    assert set(config.alerts.channels) == {"oncall"}
