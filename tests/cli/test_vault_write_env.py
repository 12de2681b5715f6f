"""`keystead vault rotate-master --write-env`: the new master key goes into the .env that
`keystead init` wrote, atomically (a new 0600 file moved into place), every other line kept,
and the key never printed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import Result

from cli.helpers import invoke
from keystead.cli.envfile import replace_variable
from keystead.vault.envelope import MasterKey

# Without it, the value an earlier invocation copied from the .env into this process's
# environment would count as "set in the environment" (a fresh process has no such leftover).
FRESH = {"KEYSTEAD_MASTER_KEY": None, "KEYSTEAD_ADMIN_TOKEN": None}


def _run(site: Path, *args: str, env: dict[str, str | None] | None = None,
         input: str | None = None) -> Result:
    return invoke("--config", str(site / "keystead.yaml"), *args, input=input,
                  env={**FRESH, **(env or {})})  # type: ignore[dict-item]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    directory = tmp_path / "site"
    assert invoke("init", str(directory)).exit_code == 0
    env = directory / ".env"
    # An operator's own lines, a quoted value and a CRLF line: all must survive untouched.
    env.write_text(env.read_text() + 'OPENAI_API_KEY="sk-keep-me"\r\nexport OTHER=1\n')
    assert _run(directory, "teams", "create", "payments").exit_code == 0
    return directory


def _master(site: Path) -> str:
    lines = (site / ".env").read_text().splitlines()
    (line,) = [ln for ln in lines if ln.startswith("KEYSTEAD_MASTER_KEY=")]
    return line.split("=", 1)[1]


def test_the_new_key_replaces_the_old_one_in_the_env(site: Path) -> None:
    env = site / ".env"
    before = env.read_bytes()
    old = _master(site)
    result = _run(site, "vault", "rotate-master", "--write-env")
    assert result.exit_code == 0, result.output
    new = _master(site)
    assert new != old
    MasterKey.from_text(new)
    assert new not in result.output and old not in result.output
    assert f"wrote the new master key to {env.resolve()}" in result.stderr
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert env.read_bytes() == before.replace(old.encode(), new.encode())  # every other byte
    assert b'OPENAI_API_KEY="sk-keep-me"\r\nexport OTHER=1\n' in env.read_bytes()
    assert [p.name for p in site.iterdir() if p.name.startswith(".env")] == [".env"]
    # The vault opens with what the .env holds now, and only with that.
    assert "payments" in _run(site, "teams", "list").stdout
    stale = _run(site, "teams", "list", env={"KEYSTEAD_MASTER_KEY": old})
    assert stale.exit_code == 2 and "sealed by master key" in stale.stderr


def test_a_chosen_key_from_stdin(site: Path) -> None:
    chosen = MasterKey.generate_text()
    result = _run(site, "vault", "rotate-master", "--write-env", "--new-key-stdin",
                  input=chosen + "\n")
    assert result.exit_code == 0 and chosen not in result.output
    assert _master(site) == chosen


def test_refused_when_the_environment_would_hide_the_env(site: Path) -> None:
    before = (site / ".env").read_text()
    old = _master(site)
    result = _run(site, "vault", "rotate-master", "--write-env",
                  env={"KEYSTEAD_MASTER_KEY": old})
    assert result.exit_code == 2
    assert "KEYSTEAD_MASTER_KEY is set in the environment" in result.stderr
    assert (site / ".env").read_text() == before
    assert "payments" in _run(site, "teams", "list").stdout  # nothing was re-sealed


def test_a_failed_rotation_leaves_the_env_as_it_was(site: Path) -> None:
    wrong = MasterKey.generate_text()  # not the key that sealed this vault
    env = site / ".env"
    env.write_text(env.read_text().replace(_master(site), wrong))
    before = env.read_text()
    failed = _run(site, "vault", "rotate-master", "--write-env")
    assert failed.exit_code == 2 and "sealed by master key" in failed.stderr
    assert env.read_text() == before
    assert [p.name for p in site.iterdir() if p.name.startswith(".env")] == [".env"]


def test_refused_without_a_env_beside_the_config(site: Path) -> None:
    env = {"KEYSTEAD_MASTER_KEY": _master(site), "KEYSTEAD_ADMIN_TOKEN": "ksa_t"}
    (site / ".env").unlink()
    result = _run(site, "vault", "rotate-master", "--write-env", env=env)
    assert result.exit_code == 2 and "there is no" in result.stderr
    assert "payments" in _run(site, "teams", "list", env=env).stdout  # nothing re-sealed


def test_replace_variable_keeps_every_other_line() -> None:
    text = "# comment\nA=1\r\nexport KEYSTEAD_MASTER_KEY=old\nB='x=y'\nKEYSTEAD_MASTER_KEY = o2"
    assert replace_variable(text, "KEYSTEAD_MASTER_KEY", "new") == (
        "# comment\nA=1\r\nexport KEYSTEAD_MASTER_KEY=new\nB='x=y'\nKEYSTEAD_MASTER_KEY =new")
    assert replace_variable("A=1", "K", "v") == "A=1\nK=v\n"
    assert replace_variable("", "K", "v") == "K=v\n"
    assert replace_variable("KX=1\nK_=2\n", "K", "v") == "KX=1\nK_=2\nK=v\n"
