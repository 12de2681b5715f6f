"""`keystead alerts`, embedded and through a gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cli.helpers import Project, Remote, closed_port
from webhook_receiver import Receiver, webhook_receiver


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with webhook_receiver() as receiver:
        yield receiver


def test_alerts_test_says_which_channel_worked(project: Project, hook: Receiver) -> None:
    project.config.write_text(project.config.read_text() + (
        "alerts:\n  channels:\n"
        "    slack: {type: slack, webhook_url: '${SLACK_URL}'}\n"
        "    down: {type: slack, webhook_url: '${DOWN_URL}'}\n"))
    env = {"SLACK_URL": hook.url, "DOWN_URL": f"http://127.0.0.1:{closed_port()}/x"}
    result = project.run("alerts", "test", env=env)
    assert result.exit_code == 1
    assert "slack: ok" in result.output
    assert "down: FAILED (failed: ClientConnectorError)" in result.output
    assert env["DOWN_URL"] not in result.output
    assert hook.received[0]["text"].startswith(":wave: TEST")
    only = project.run("alerts", "test", "--channel", "slack", env=env)
    assert only.exit_code == 0 and "down" not in only.output
    assert project.run("alerts", "test", "--channel", "nope", env=env).exit_code == 1


def test_list_silence_unsilence(project: Project) -> None:
    listed = json.loads(project.ok("alerts", "list", "--format", "json").stdout)
    assert {r["rule"] for r in listed} >= {"budget", "auth_failures", "new_source"}
    assert all(r["state"] == "ok" for r in listed)
    out = project.ok("alerts", "silence", "budget", "--for", "2h", "--reason", "month end")
    assert out.stdout.startswith("silenced budget until ")
    [row] = [r for r in json.loads(project.ok("alerts", "list", "--format", "json").stdout)
             if r["rule"] == "budget"]
    assert row["silenced_until"] is not None
    assert project.run("alerts", "silence", "nope", "--for", "2h").exit_code == 2
    assert project.run("alerts", "silence", "budget", "--for", "soon").exit_code == 2
    project.ok("alerts", "unsilence", "budget")
    assert project.run("alerts", "unsilence", "budget").exit_code == 1


def test_remote_alerts(remote: Remote) -> None:
    out = remote.ok("alerts", "silence", "auth_failures:key:ab12cd34", "--for", "1h")
    assert "silenced auth_failures:key:ab12cd34" in out.stdout
    rows = remote.json("alerts", "list", "--format", "json")
    [row] = [r for r in rows if r["rule"] == "auth_failures"]
    assert row["state"] == "ok" and row["silenced_until"] is None  # one alert's, not the rule's
    remote.ok("alerts", "unsilence", "auth_failures:key:ab12cd34")
    result = remote.run("alerts", "test")
    assert result.exit_code == 2 and "No alert channels" in result.output
