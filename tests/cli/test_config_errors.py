"""A configuration a command cannot use: one line that says what to fix, exit 2 (docs/cli.md),
never a traceback, never a secret in a suggestion, and never a stray database."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result

from cli.helpers import CONFIG, Project, closed_port, invoke


def _refused(result: Result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.stderr


def test_a_missing_master_key_exits_2_and_suggests_no_default(project: Project) -> None:
    result = project.run("keys", "list", env={"KEYSTEAD_MASTER_KEY": ""})
    _refused(result, "vault.master_key", "KEYSTEAD_MASTER_KEY is not set", ".env")
    assert ":-" not in result.stderr and "default" not in result.stderr


def test_a_missing_secret_of_any_kind_suggests_no_default(project: Project) -> None:
    project.config.write_text(CONFIG + "admin:\n  token: ${MY_ADMIN_TOKEN_UNSET}\n"
                              "incidents:\n  webhook_url: ${MY_HOOK_UNSET}\n")
    _refused(result := project.run("keys", "list"), "admin.token", "MY_ADMIN_TOKEN_UNSET")
    assert ":-" not in result.stderr


def test_a_missing_plain_setting_still_offers_a_default(project: Project) -> None:
    project.config.write_text(CONFIG + "server:\n  host: ${MY_HOST_UNSET}\n")
    _refused(project.run("keys", "list"), "server.host", "${MY_HOST_UNSET:-default}")


def test_no_master_key_configured_at_all_exits_2(project: Project) -> None:
    project.config.write_text(CONFIG.replace("vault:\n  master_key: ${KEYSTEAD_MASTER_KEY}\n",
                                             ""))
    result = project.run("keys", "list", env={"KEYSTEAD_MASTER_KEY": ""})
    _refused(result, "no master key: set KEYSTEAD_MASTER_KEY", "keystead init")


def test_a_master_key_file_that_is_missing_exits_2(project: Project) -> None:
    project.config.write_text(CONFIG.replace("master_key: ${KEYSTEAD_MASTER_KEY}",
                                             "master_key_file: gone.key"))
    _refused(project.run("keys", "list", env={"KEYSTEAD_MASTER_KEY": ""}),
             "master key file", "gone.key does not exist")


@pytest.mark.parametrize(("content", "expected"), [
    (b"providers: [oops\n", "not valid YAML"),
    (b"servr:\n  port: 1\n", "unknown setting"),
    (b"database:\n  url: \xff\xfe\n", "not UTF-8"),
])
def test_an_unusable_config_file_exits_2(project: Project, content: bytes,
                                         expected: str) -> None:
    project.config.write_bytes(content)
    _refused(project.run("keys", "list"), str(project.config), expected)


def test_a_server_url_without_a_scheme_exits_2() -> None:
    result = invoke("--server", f"127.0.0.1:{closed_port()}", "--admin-token", "t", "keys",
                    "list")
    _refused(result, "is not a gateway's URL", "http://HOST:PORT")


def test_no_config_here_refuses_instead_of_creating_a_database(tmp_path: Path) -> None:
    stray = tmp_path / "elsewhere"
    stray.mkdir()
    for command in (["keys", "list"], ["teams", "create", "payments"], ["usage"], ["serve"],
                    ["providers", "list"], ["vault", "rotate-master"]):
        result = invoke(*command, env={"KEYSTEAD_MASTER_KEY": "x" * 43 + "="})
        _refused(result, "no keystead.yaml in", "keystead init", "--config", "KEYSTEAD_CONFIG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]


def test_the_built_in_defaults_run_when_the_database_is_named(tmp_path: Path) -> None:
    from keystead.vault.envelope import MasterKey

    db = tmp_path / "data" / "chosen.db"
    env = {"KEYSTEAD_DATABASE_URL": f"sqlite:///{db}",
           "KEYSTEAD_MASTER_KEY": MasterKey.generate_text()}
    assert invoke("teams", "create", "payments", env=env).exit_code == 0
    assert "payments" in invoke("teams", "list", env=env).stdout
    assert db.exists() and not (tmp_path / "keystead.db").exists()
