"""A key's say on the response cache: `keys create --cache on|off`, `keys update --cache
on|off|default`, and what `keys show` / `keys list` print; embedded and through a running gateway
(--server)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cli.helpers import Project, Remote
from cli.test_keys_limits import identify, lines


def test_create_with_and_without_a_cache_setting(project: Project) -> None:
    off = project.create_key("prod-pii-bot", "--cache", "off")
    on = project.create_key("prod-faq-bot", "--cache", "ON")
    plain = project.create_key("prod-chat-bot")
    assert (off["cache"], on["cache"], plain["cache"]) == (False, True, None)
    assert project.sql("SELECT name, cache FROM keys ORDER BY name") == [
        ("prod-chat-bot", None), ("prod-faq-bot", 1), ("prod-pii-bot", 0)]
    # What a gateway loads.
    assert identify(project, off["key"]).cache is False
    assert identify(project, on["key"]).cache is True
    assert identify(project, plain["key"]).cache is None
    # For people: the words of --cache; for scripts: true, false, null.
    assert lines(project.ok("keys", "show", "prod-pii-bot").stdout)["cache"] == "off"
    assert lines(project.ok("keys", "show", "prod-faq-bot").stdout)["cache"] == "on"
    assert lines(project.ok("keys", "show", "prod-chat-bot").stdout)["cache"] == "default"
    assert json.loads(project.ok("keys", "show", "prod-pii-bot", "--json").stdout)["cache"] \
        is False
    # The table output of create shows it too.
    created = project.ok("keys", "create", "prod-other-bot", "--cache", "off").stdout
    assert lines(created.split("\n\n")[0])["cache"] == "off"


def test_create_refuses_an_unknown_cache_word(project: Project) -> None:
    result = project.run("keys", "create", "prod-pii-bot", "--cache", "default")
    assert result.exit_code == 2
    assert "'default' is not one of 'on', 'off'" in result.stderr
    assert not project.db.exists()  # refused before the store was even opened


def test_update_sets_and_resets_the_cache_setting(project: Project) -> None:
    created = project.create_key("prod-pii-bot")
    off = json.loads(project.ok("keys", "update", "prod-pii-bot", "--cache", "off",
                                "--json").stdout)
    assert off["cache"] is False
    assert identify(project, created["key"]).cache is False
    # Other changes leave it alone.
    kept = json.loads(project.ok("keys", "update", "prod-pii-bot", "--rpm", "5",
                                 "--json").stdout)
    assert kept["cache"] is False and kept["limits"]["rpm"] == 5
    on = project.ok("keys", "update", "prod-pii-bot", "--cache", "on").stdout
    assert lines(on)["cache"] == "on"
    assert identify(project, created["key"]).cache is True
    reset = json.loads(project.ok("keys", "update", "prod-pii-bot", "--cache", "default",
                                  "--json").stdout)
    assert reset["cache"] is None
    assert project.sql("SELECT cache FROM keys") == [(None,)]
    # The audit trail names the field.
    events = json.loads(project.ok("events", "--kind", "key.updated", "--format",
                                   "json").stdout)
    assert [e["detail"]["fields"] for e in events] == [["cache"], ["cache"], ["limits"],
                                                       ["cache"]]


def test_update_refuses_a_bad_cache_word(project: Project) -> None:
    project.create_key("prod-pii-bot", "--cache", "off")
    result = project.run("keys", "update", "prod-pii-bot", "--cache", "maybe")
    assert result.exit_code == 2
    assert "'maybe' is not one of 'on', 'off', 'default'" in result.stderr
    assert project.sql("SELECT cache FROM keys") == [(0,)]


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_list_shows_the_cache_setting(project: Project, fmt: str) -> None:
    project.create_key("prod-a-bot", "--cache", "off")
    project.create_key("prod-b-bot", "--cache", "on")
    project.create_key("prod-c-bot")
    out = project.ok("keys", "list", "--format", fmt).stdout
    if fmt == "json":
        assert [r["cache"] for r in json.loads(out)] == [False, True, None]
    elif fmt == "csv":
        assert [r["cache"] for r in csv.DictReader(io.StringIO(out))] == ["False", "True", ""]
    else:
        header, *rows = out.splitlines()
        column = header.split().index("CACHE")
        assert [row.split()[column] for row in rows] == ["off", "on", "default"]


def test_remote_cache_setting_matches_embedded(project: Project, remote: Remote) -> None:
    created = remote.json("keys", "create", "prod-pii-bot", "--cache", "off", "--json")
    assert created["cache"] is False
    assert json.loads(project.ok("keys", "show", "prod-pii-bot", "--json").stdout) == {
        k: v for k, v in created.items() if k != "key"}
    assert remote.ok("keys", "show", "prod-pii-bot").stdout == project.ok(
        "keys", "show", "prod-pii-bot").stdout
    assert remote.ok("keys", "list").stdout == project.ok("keys", "list").stdout
    # The gateway that served the change uses it at once.
    assert remote.json("keys", "update", "prod-pii-bot", "--cache", "on", "--json")[
        "cache"] is True
    assert remote.runtime.keys.identify(b"Bearer " + created["key"].encode()).cache is True
    reset = remote.json("keys", "update", "prod-pii-bot", "--cache", "default", "--json")
    assert reset["cache"] is None
    assert remote.runtime.keys.identify(b"Bearer " + created["key"].encode()).cache is None
    assert project.sql("SELECT cache FROM keys") == [(None,)]
