"""A key's model scope: an empty one is refused (it read as "every model"), and a model that no
provider or route serves gets a warning (the key is still made)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from cli.helpers import ADMIN_TOKEN, CONFIG, Project, Remote

ROUTES = """routes:
  support-default:
    deployments:
      - {provider: mock, model: gpt-4o-mini}
"""


def _admin(remote: Remote, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        remote.url + path, data=json.dumps(body).encode(), method=method,
        headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("models", ["", " ", ",", " , "])
def test_an_empty_model_list_is_refused_on_create(project: Project, models: str) -> None:
    result = project.run("keys", "create", "dev-app-chat", "--models", models)
    assert result.exit_code == 2
    assert "--models" in result.stderr and "leave --models out" in result.stderr
    assert not project.db.exists()  # refused before the store was opened


def test_an_empty_model_list_is_refused_on_update(project: Project) -> None:
    project.create_key("dev-app-chat", "--models", "gpt-4o-mini")
    result = project.run("keys", "update", "dev-app-chat", "--models", "")
    assert result.exit_code == 2 and "--models off" in result.stderr
    shown = json.loads(project.ok("keys", "show", "dev-app-chat", "--json").stdout)
    assert shown["models"] == ["gpt-4o-mini"]
    opened = json.loads(project.ok("keys", "update", "dev-app-chat", "--models", "off",
                                   "--json").stdout)
    assert opened["models"] is None  # `off` is how every model is allowed


def test_the_admin_api_refuses_an_empty_model_list(project: Project, remote: Remote) -> None:
    status, body = _admin(remote, "POST", "/admin/keys", {"name": "dev-app-chat", "models": []})
    assert status == 400 and body["error"]["param"] == "models"
    remote.ok("keys", "create", "dev-app-chat", "--models", "gpt-4o-mini")
    status, body = _admin(remote, "PATCH", "/admin/keys/dev-app-chat", {"models": [""]})
    assert status == 400 and body["error"]["param"] == "models"
    assert remote.json("keys", "show", "dev-app-chat", "--json")["models"] == ["gpt-4o-mini"]


def test_a_model_no_provider_serves_is_warned_about(project: Project) -> None:
    result = project.ok("keys", "create", "dev-app-chat", "--models", "gpt-4o-mini,gtp-4o")
    assert "warning: no provider or route serves 'gtp-4o'" in result.stderr
    assert "gpt-4o-mini'" not in result.stderr
    assert result.stdout.count("ksk_") == 1  # the key is made all the same
    updated = project.ok("keys", "update", "dev-app-chat", "--models", "claude-x")
    assert "serves 'claude-x'" in updated.stderr


def test_served_names_get_no_warning(project: Project) -> None:
    project.config.write_text(CONFIG + "  local:\n    type: openai-compatible\n"
                              "    base_url: http://127.0.0.1:1/v1\n    models: [\"llama*\"]\n"
                              + ROUTES)
    project.ok("providers", "add", "added", "--type", "openai-compatible", "--base-url",
               "http://127.0.0.1:1/v1", "--models", "qwen-7b")
    result = project.ok("keys", "create", "dev-app-chat", "--models",
                        "gpt-4o-mini,llama3-8b,support-default,mock/gpt-4o-mini,qwen-7b,gpt-4o*")
    assert "warning" not in result.stderr, result.stderr


def test_the_warning_through_a_gateway(project: Project, remote: Remote) -> None:
    result = remote.run("keys", "create", "dev-app-chat", "--models", "gpt-4o,gtp-4o")
    assert result.exit_code == 0
    assert "serves 'gtp-4o'" in result.stderr and "'gpt-4o'" not in result.stderr
