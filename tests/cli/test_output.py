"""What people read: values as text (never Python's repr), and a sentence when a list is empty.
Scripts keep their formats: JSON stays `[]`, CSV its header, nested values JSON."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cli.helpers import Project, Remote


def test_events_print_readable_details(project: Project) -> None:
    project.create_team("payments")
    project.create_key("prod-pay-api", "--team", "payments")
    project.ok("keys", "update", "prod-pay-api", "--rpm", "60", "--models", "gpt-4o")
    table = project.ok("events").stdout
    assert "{" not in table and "'" not in table and "None" not in table
    assert "name=prod-pay-api env=prod team=payments" in table
    assert "fields=limits,models" in table
    rows = list(csv.DictReader(io.StringIO(project.ok("events", "--format", "csv").stdout)))
    assert [json.loads(r["detail"]) for r in rows] == [
        {"fields": ["limits", "models"]},
        {"name": "prod-pay-api", "env": "prod", "team": "payments"}]


def test_nested_values_and_nothing_read_as_text(project: Project) -> None:
    project.create_key("prod-pay-api")
    project.ok("incident", "prod-pay-api", "--revoke")
    table = project.ok("events", "--kind", "incident").stdout
    assert "owner_notified=-" in table and "unusual=-" in table and "requests=0" in table


EMPTY = [
    (["keys", "list"], "no keys yet; create one with `keystead keys create NAME`"),
    (["keys", "list", "--due"], "no key's rotation is due (keys.rotate_every)"),
    (["keys", "list", "--due", "30d"], "no key's rotation is due within 30d"),
    (["teams", "list"], "no teams yet; create one with `keystead teams create NAME`"),
    (["usage"], "no requests in the last 7d"),
    (["usage", "--by", "model", "--since", "24h", "--team", "payments"],
     "no requests in the last 24h, team payments"),
    (["events", "--kind", "key.revoked"], "no events, kind key.revoked"),
]


@pytest.mark.parametrize(("command", "sentence"), EMPTY)
def test_an_empty_list_says_so(project: Project, command: list[str], sentence: str) -> None:
    assert project.ok(*command).stdout.strip().startswith(sentence)
    assert json.loads(project.ok(*command, "--format", "json").stdout) == []
    header = project.ok(*command, "--format", "csv").stdout.strip()
    assert "," in header and "\n" not in header


def test_an_empty_list_through_a_gateway(project: Project, remote: Remote) -> None:
    assert remote.ok("keys", "list").stdout.startswith("no keys yet")
    assert remote.json("keys", "list", "--format", "json") == []
