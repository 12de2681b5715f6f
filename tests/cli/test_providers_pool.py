"""A pool of keys on a provider added at run time, from the CLI: add several keys, add, replace and
remove one, see each key's state (embedded and --server), and a key the provider revoked taken
out by the gateway, reported, tested and put back."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.request
from typing import Any

from cli.helpers import Project, Remote
from keystead.mocks.openai_upstream import MockUpstream
from keystead.providers.key_pool import fingerprint

K1, K2, K3 = (f"sk-cli-pool-{n}-0123456789abcdefghij" for n in (1, 2, 3))
NEW2 = "sk-cli-pool-2-replaced-0123456789abc"
CHAT = json.dumps({"model": "pool-model",
                   "messages": [{"role": "user", "content": "hi"}]}).encode()


def chat(remote: Remote, key: str) -> int:
    request = urllib.request.Request(
        remote.url + "/v1/chat/completions", data=CHAT, method="POST",
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def keys_of(view: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(k["label"], k["source"], k["state"]) for k in view["keys"]]


def test_a_pool_added_at_run_time(project: Project, remote: Remote) -> None:
    added = project.ok("providers", "add", "pooled", "--type", "mock", "--models", "pool-model",
                       "--api-key-stdin", input=f"{K1}\n{K2}\n")
    assert "key: vault, vault" in added.stdout
    (row,) = [p for p in json.loads(project.ok("providers", "list", "--format", "json").stdout)
              if p["name"] == "pooled"]
    assert keys_of(row) == [("#1", "vault", "active"), ("#2", "vault", "active")]
    assert row["keys"][0]["fingerprint"] == fingerprint(K1)
    assert "#1 active, #2 active" in project.ok("providers", "list").stdout

    assert "key #3 added" in project.ok("providers", "set-key", "pooled", "--add",
                                        input=f"{K3}\n").stdout
    project.ok("providers", "set-key", "pooled", "--add", "--ref", "env:CLI_POOL_UNSET")
    shown = json.loads(project.ok("providers", "show", "pooled", "--json").stdout)
    assert keys_of(shown)[3] == ("#4", "env:CLI_POOL_UNSET", "unusable")
    assert shown["status"] == "ok" and "CLI_POOL_UNSET" in shown["keys"][3]["reason"]
    # Refusals: which key, a twin, a ref without --add, a missing label, the config provider.
    assert project.run("providers", "set-key", "pooled", input="sk-x\n").exit_code == 2
    assert project.run("providers", "set-key", "pooled", "--add", input=f"{K1}\n").exit_code == 2
    assert project.run("providers", "set-key", "pooled", "--ref", "env:X").exit_code == 2
    assert project.run("providers", "set-key", "pooled", "--add",
                       "--remove", "1").exit_code == 2
    assert project.run("providers", "set-key", "pooled", "--remove", "9").exit_code == 1
    assert project.run("providers", "set-key", "mock", "--add", input="sk-x\n").exit_code == 2
    assert "key #4 removed" in project.ok("providers", "set-key", "pooled", "--remove",
                                          "4").stdout
    ((ref, refs),) = project.sql("SELECT api_key_ref, api_key_refs FROM providers "
                                 "WHERE name = 'pooled'")
    assert ref == "vault:provider:pooled" and len(json.loads(refs)) == 3
    stored = project.stored_bytes()
    assert all(k.encode() not in stored for k in (K1, K2, K3))

    # The gateway serves the pool: spread over the keys; #2 revoked at the provider.
    wait_for(lambda: len(getattr(remote.runtime.providers.providers.get("pooled"), "keys", ())
                         ) == 3, "the gateway did not load the pool")
    app = remote.runtime.providers.providers["pooled"].transport.app  # type: ignore[attr-defined]
    assert isinstance(app, MockUpstream)
    app.settings = dataclasses.replace(app.settings, api_keys=(K1, K3))
    gateway_key = project.create_key("prod-pool-cli")["key"]
    wait_for(lambda: chat(remote, gateway_key) == 200, "the gateway did not load the key")
    assert [chat(remote, gateway_key) for _ in range(9)] == [200] * 9

    view = remote.json("providers", "show", "pooled", "--json")
    assert keys_of(view)[1] == ("#2", "vault", "disabled")
    wait_for(lambda: "disabled" in project.ok("providers", "show", "pooled").stdout,
             "the state did not reach the store")  # embedded: from the shared store
    events = json.loads(project.ok("events", "--kind", "provider.key_disabled", "--format",
                                   "json").stdout)
    assert events[0]["detail"]["label"] == "#2" and events[0]["actor"] == "gateway"

    tested = remote.run("providers", "test", "pooled")
    assert tested.exit_code == 1
    assert "2 of 3 keys ok" in tested.stdout
    assert f"#2 {fingerprint(K2)} FAILED state=disabled status=401" in tested.stdout

    app.settings = dataclasses.replace(app.settings, api_keys=(K1, K2, K3))  # fixed there
    assert "back in rotation" in remote.ok("providers", "enable-key", "pooled", "2").stdout
    assert keys_of(remote.json("providers", "show", "pooled", "--json"))[1][2] == "active"
    assert remote.ok("providers", "test", "pooled").stdout.startswith("ok: pooled")
    assert remote.run("providers", "enable-key", "pooled", "7").exit_code == 1

    # Replacing #2 (embedded): the gateway takes the new key within a second.
    project.ok("providers", "set-key", "pooled", "--key", "2", input=f"{NEW2}\n")
    wait_for(lambda: remote.runtime.providers.providers["pooled"].keys.secrets == (K1, NEW2, K3),
             "the gateway kept the old #2")
    project.ok("providers", "remove", "pooled")
    assert project.sql("SELECT count(*) FROM vault_secrets WHERE id LIKE 'provider:pooled%'"
                       ) == [(0,)]
