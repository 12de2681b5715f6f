"""`keystead check`: embedded against the built-in mock, a pool whose second key the provider
refuses (each key reported on its own, by label), and --server through a running gateway."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cli.helpers import Project, Remote
from keystead.mocks.openai_upstream import MockSettings, create_mock_app

GOOD = "sk-check-good-key-0123456789abcdef"
BAD = "sk-check-bad-key-0123456789abcdef"


@contextmanager
def mock_over_http(settings: MockSettings) -> Iterator[str]:
    """The mock upstream on a real socket (uvicorn in a thread); yields its /v1 base URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_mock_app(settings), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_check_passes_on_the_built_in_mock_and_prints_rate_limits(project: Project) -> None:
    result = project.ok("check")
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["RESULT", "TARGET", "STATUS", "MODEL"]
    (row,) = [line for line in lines if "provider:mock" in line]
    assert row.split()[:4] == ["ok", "provider:mock", "200", "gpt-4o-mini"]
    assert "requests 9999/10000 reset 6ms" in row and "tokens 199990/200000" in row
    # The cost went to the ledger as a synthetic check: no key, no team.
    rows = project.sql("SELECT feature, key_id, team, provider, status FROM usage")
    assert rows == [("synthetic-check", None, None, "mock", 200)]


def test_each_key_of_a_pool_is_checked_and_the_refused_one_named(project: Project) -> None:
    with mock_over_http(MockSettings(api_key=GOOD, models=("gpt-4o-mini",))) as base_url:
        project.ok("providers", "add", "pool", "--type", "openai-compatible", "--base-url",
                   base_url, "--models", "gpt-4o-mini", "--api-key-stdin",
                   input=f"{GOOD}\n{BAD}\n")
        result = project.run("check", "--provider", "pool")
        as_json = project.run("check", "--provider", "pool", "--json")
    assert result.exit_code == 1, result.output
    rows = {line.split()[1]: line for line in result.stdout.splitlines()[1:]}
    assert sorted(rows) == ["provider:pool#1", "provider:pool#2"]
    assert rows["provider:pool#1"].split()[:3] == ["ok", "provider:pool#1", "200"]
    assert rows["provider:pool#2"].split()[:3] == ["FAILED", "provider:pool#2", "401"]
    assert "the provider refused the key" in rows["provider:pool#2"]
    assert GOOD not in result.output + as_json.output
    assert BAD not in result.output + as_json.output
    found = json.loads(as_json.stdout)
    assert found["ok"] is False
    second = next(r for r in found["results"] if r["target"] == "provider:pool#2")
    assert (second["status"], second["error"]) == (401, "http_401")
    # A pinned check changes no key state: #2 is still in rotation until traffic says not.
    shown = json.loads(project.ok("providers", "show", "pool", "--json").stdout)
    assert [k["state"] for k in shown["keys"]] == ["active", "active"]


def test_a_provider_or_route_that_does_not_exist_is_refused(project: Project) -> None:
    result = project.run("check", "--route", "nope")
    assert result.exit_code == 1
    assert "No route named 'nope'" in result.stderr


def test_check_through_a_running_gateway(remote: Remote) -> None:
    found = remote.json("check", "--json")
    assert found["ok"] is True
    (result,) = found["results"]
    assert result["target"] == "provider:mock"
    assert result["status"] == 200 and result["model"] == "gpt-4o-mini"
    assert result["rate_limits"]["x-ratelimit-remaining-requests"] == "9999"
    # The gateway keeps the latest result per target for its metrics.
    assert remote.runtime.checks["provider:mock"].ok
    table = remote.ok("check", "--provider", "mock").stdout
    assert "provider:mock" in table and "ok" in table
    refused = remote.run("check", "--route", "nope")
    assert refused.exit_code == 1 and "No route named" in refused.stderr
