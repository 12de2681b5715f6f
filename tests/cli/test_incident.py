"""`keystead incident`: embedded, with the leaked text on stdin, and through a gateway."""

from __future__ import annotations

import json

import pytest

from cli.helpers import Project, Remote
from cli.test_keys_limits import identify
from keystead.errors import AuthError


def test_incident_reads_the_leaked_text_from_stdin_and_prints_the_replacement(project: Project):
    leaked = project.create_key("prod-support-bot-01")["key"]
    result = project.ok("incident", "-", "--reason", "ticket 4711", input=leaked + "\n")
    assert "rotated" in result.stdout and "owner notified: no webhook configured" in result.stdout
    new = next(line.strip() for line in result.stdout.splitlines()
               if line.strip().startswith("ksk_"))
    assert leaked not in result.stdout + result.stderr  # the leaked text is never echoed
    assert identify(project, new).name == "prod-support-bot-01"
    with pytest.raises(AuthError) as refused:
        identify(project, leaked)
    assert refused.value.code == "key_rotated"


def test_incident_revoke_only_as_json(project: Project):
    project.create_key("prod-support-bot-01")
    report = json.loads(project.ok("incident", "prod-support-bot-01", "--revoke",
                                   "--json").stdout)
    assert report["action"] == "revoked" and report["new_key"] is None
    assert report["forensics"]["requests"] == 0
    assert project.run("incident", "prod-support-bot-01").exit_code == 2  # revoked already
    assert project.run("incident", "ksk_not-a-key").exit_code == 2


def test_remote_incident(project: Project, remote: Remote):
    leaked = remote.json("keys", "create", "prod-support-bot-01", "--json")["key"]
    report = remote.json("incident", leaked, "--json")
    assert report["action"] == "rotated"
    with pytest.raises(AuthError):
        remote.runtime.keys.identify(b"Bearer " + leaked.encode())
    assert remote.runtime.keys.identify(b"Bearer " + report["new_key"].encode()).name == \
        "prod-support-bot-01"
