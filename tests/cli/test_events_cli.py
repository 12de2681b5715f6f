"""`keystead events`, embedded and through a gateway."""

from __future__ import annotations

import json

from cli.helpers import Project, Remote


def test_events_lists_the_audit_trail(project: Project) -> None:
    project.create_key("prod-pay-api")
    project.ok("keys", "revoke", "prod-pay-api", "--reason", "test")
    rows = json.loads(project.ok("events", "--key", "prod-pay-api", "--format", "json").stdout)
    assert [r["kind"] for r in rows] == ["key.revoked", "key.created"]
    assert rows[0]["actor"] == "cli" and rows[0]["detail"] == {"reason": "test"}
    assert "key.revoked" in project.ok("events", "--kind", "key.revoked").stdout
    assert project.run("events", "--since", "soon").exit_code == 2


def test_remote_events(project: Project, remote: Remote) -> None:
    remote.ok("keys", "create", "prod-pay-api")
    rows = remote.json("events", "--format", "json")
    assert [(r["kind"], r["actor"]) for r in rows] == [("key.created", "admin-api")]
