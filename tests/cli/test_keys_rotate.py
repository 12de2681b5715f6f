"""`keystead keys rotate` and `keys list --due`, embedded and through a gateway (--server)."""

from __future__ import annotations

import json

import pytest

from cli.helpers import Project, Remote
from cli.test_keys_limits import identify
from keystead.errors import AuthError


def with_policy(project: Project) -> None:
    project.config.write_text(project.config.read_text()
                              + "keys:\n  rotate_every: {prod: 30d, staging: 90d}\n")


def test_rotate_prints_the_new_key_once_and_keeps_the_old_one_for_the_grace(project: Project):
    old = project.create_key("prod-pay-api")["key"]
    result = project.ok("keys", "rotate", "prod-pay-api", "--grace", "2h")
    new = next(line.strip() for line in result.stdout.splitlines()
               if line.strip().startswith("ksk_"))
    assert new != old
    assert "The old key works until" in result.stdout
    assert identify(project, new).name == identify(project, old).name == "prod-pay-api"
    assert identify(project, new).id == identify(project, old).id


def test_rotate_with_no_grace_and_as_json(project: Project):
    old = project.create_key("prod-pay-api")["key"]
    rotated = json.loads(project.ok("keys", "rotate", "prod-pay-api", "--grace", "0s",
                                    "--json").stdout)
    assert rotated["previous_key_expires_at"] is None and rotated["key"].startswith("ksk_")
    with pytest.raises(AuthError):
        identify(project, old)


def test_rotate_refuses_bad_input(project: Project):
    project.create_key("prod-pay-api")
    bad = project.run("keys", "rotate", "prod-pay-api", "--grace", "soon")
    assert bad.exit_code == 2 and "not a duration" in bad.stderr
    assert project.run("keys", "rotate", "prod-nope-api").exit_code == 1
    project.ok("keys", "revoke", "prod-pay-api")
    assert project.run("keys", "rotate", "prod-pay-api").exit_code == 2


def test_list_due_follows_the_policy(project: Project):
    with_policy(project)
    project.create_key("prod-pay-api")
    project.create_key("staging-pay-api")
    project.create_key("dev-pay-api")
    assert "pay-api" not in project.ok("keys", "list", "--due").stdout
    soon = project.ok("keys", "list", "--due", "31d").stdout
    assert "prod-pay-api" in soon and "staging-pay-api" not in soon
    rows = json.loads(project.ok("keys", "list", "--due", "91d", "--format", "json").stdout)
    assert [r["name"] for r in rows] == ["prod-pay-api", "staging-pay-api"]
    shown = json.loads(project.ok("keys", "show", "dev-pay-api", "--json").stdout)
    assert shown["rotation_due_at"] is None


def test_remote_rotate_and_due_match_embedded(project: Project, remote: Remote):
    old = remote.json("keys", "create", "prod-pay-api", "--json")["key"]
    rotated = remote.json("keys", "rotate", "prod-pay-api", "--json")
    assert remote.runtime.keys.identify(b"Bearer " + rotated["key"].encode()).name == \
        "prod-pay-api"
    assert remote.runtime.keys.identify(b"Bearer " + old.encode()).name == "prod-pay-api"
    assert remote.json("keys", "list", "--due", "1d", "--format", "json") == []
    bad = remote.run("keys", "rotate", "prod-pay-api", "--grace", "soon")
    assert bad.exit_code == 2
