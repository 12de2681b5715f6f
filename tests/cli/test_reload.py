"""`keystead reload`: what it prints and how it exits (the e2e tests run it against real
gateway processes under traffic)."""

from __future__ import annotations

import json

import pytest

from cli.helpers import Project, Remote


@pytest.fixture
def gateway_env(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway in this process re-reads its file with this process's environment."""
    monkeypatch.setenv("KEYSTEAD_MASTER_KEY", project.master_key)


@pytest.mark.usefixtures("gateway_env")
def test_reload_through_a_gateway_prints_what_it_did(project: Project, remote: Remote) -> None:
    result = remote.ok("reload", "--wait", "0s", "--json")
    answer = json.loads(result.stdout)
    assert answer["asked"]["others"].startswith("asked through the store")
    [gateway] = answer["gateways"]
    assert gateway["trigger"] == "admin-api" and gateway["ok"] is True
    # The test gateway runs with an admin token its file does not have: a reload keeps it and
    # says that only a restart would apply the file's (none).
    assert gateway["changed"] == [] and gateway["restart_needed"] == ["admin.token"]

    text = remote.ok("reload", "--wait", "0s").stdout.splitlines()
    assert text[0] == "other gateways: asked through the store (they re-read within a second)"
    assert text[1].endswith("(admin-api): file " + gateway["digest"] + "; nothing to apply; "
                            "changed but kept until a restart: admin.token")


@pytest.mark.usefixtures("gateway_env")
def test_a_bad_file_on_the_gateway_is_refused_with_exit_2(project: Project,
                                                         remote: Remote) -> None:
    project.config.write_text(project.config.read_text() + "limits:\n  rpn: 5\n")
    result = remote.run("reload", "--wait", "0s")
    assert result.exit_code == 2, result.output
    assert "limits.rpn: unknown setting" in result.output
    assert "running config is kept" in result.output


def test_a_bad_local_file_asks_no_gateway(project: Project) -> None:
    project.config.write_text(project.config.read_text() + "routess: {}\n")
    result = project.run("reload", "--wait", "0s")
    assert result.exit_code == 2, result.output
    assert "routess: unknown setting" in result.output
    assert not project.db.exists()  # the store was not even opened


def test_reload_without_a_gateway_says_none_answered(project: Project) -> None:
    result = project.run("reload", "--wait", "0s")
    assert result.exit_code == 1, result.output
    assert "no gateway answered within 0s" in result.output
    assert project.sql("SELECT value FROM meta WHERE name = 'config'") == [(1,)]


def test_a_wrong_wait_is_a_usage_error(project: Project) -> None:
    result = project.run("reload", "--wait", "soon")
    assert result.exit_code == 2 and "--wait" in result.output
