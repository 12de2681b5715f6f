"""Keys with teams, limits and IP allowlists: `keys create` options, `keys update`, and
`usage` filters; embedded and through a running gateway (--server)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from cli.helpers import Project, Remote
from keystead.config.load import load_config
from keystead.runtime import Runtime
from keystead.state.records import KeyRecord, Limits, UsageRecord
from keystead.state.sql_store import SQLStore

NO_LIMITS = {"rpm": None, "rpd": None, "tpm": None, "tpd": None, "max_parallel": None,
             "budget_usd": None, "budget_period": "month"}


def lines(text: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in text.splitlines() if line.strip())


def identify(project: Project, key_text: str) -> KeyRecord:
    """The key as a freshly opened gateway runtime sees it."""

    async def main() -> KeyRecord:
        runtime = await Runtime.open(load_config(project.config, environ={
            "KEYSTEAD_MASTER_KEY": project.master_key}), serving=False)
        try:
            return runtime.keys.identify(b"Bearer " + key_text.encode())
        finally:
            await runtime.close()

    return asyncio.run(main())


# --- create ----------------------------------------------------------------------------------


def test_a_keys_team_must_exist(project: Project) -> None:
    result = project.run("keys", "create", "dev-pay-api", "--team", "payments")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: No team named 'payments'. Create it first: "
                                     "keystead teams create NAME")
    assert project.sql("SELECT count(*) FROM keys") == [(0,)]
    project.create_team("payments")
    assert project.create_key("dev-pay-api", "--team", "payments")["team"] == "payments"
    # A key without a team needs none.
    assert project.create_key("dev-pay-other")["team"] is None


def test_create_with_limits_and_allowlist(project: Project) -> None:
    project.create_team("payments")
    created = project.create_key(
        "prod-pay-api", "--team", "payments", "--rpm", "60", "--rpd", "1000", "--tpm", "9000",
        "--tpd", "90000", "--max-parallel", "3", "--budget", "0.75", "--budget-period", "day",
        "--ip-allow", "203.0.113.0/24,2001:db8::7")
    limits = {"rpm": 60, "rpd": 1000, "tpm": 9000, "tpd": 90000, "max_parallel": 3,
              "budget_usd": "0.75", "budget_period": "day"}
    assert created["limits"] == limits
    assert created["ip_allowlist"] == ["203.0.113.0/24", "2001:db8::7/128"]
    assert json.loads(project.ok("keys", "show", "prod-pay-api", "--json").stdout) == {
        k: v for k, v in created.items() if k != "key"}
    shown = lines(project.ok("keys", "show", "prod-pay-api").stdout)
    assert shown["limits"] == ("rpm=60 rpd=1000 tpm=9000 tpd=90000 max_parallel=3 "
                               "budget=0.75 USD/day")
    assert shown["ip_allowlist"] == "203.0.113.0/24,2001:db8::7/128"
    # What a gateway loads: exact money, canonical networks.
    record = identify(project, created["key"])
    assert record.limits == Limits(rpm=60, rpd=1000, tpm=9000, tpd=90000, max_parallel=3,
                                   budget_usd=Decimal("0.75"), budget_period="day")
    assert record.ip_allowlist == ("203.0.113.0/24", "2001:db8::7/128")


def test_the_table_output_of_create_shows_limits(project: Project) -> None:
    result = project.ok("keys", "create", "dev-app-chat", "--tpm", "500", "--budget", "$5")
    shown = lines(result.stdout)
    assert shown["limits"] == "tpm=500 budget=5 USD/month"
    assert shown["ip_allowlist"] == "-"


def test_a_key_without_limits(project: Project) -> None:
    created = project.create_key("dev-app-plain")
    assert created["limits"] == NO_LIMITS and created["ip_allowlist"] is None
    assert lines(project.ok("keys", "show", "dev-app-plain").stdout)["limits"] == "-"


@pytest.mark.parametrize(("options", "fragment"), [
    (["--ip-allow", "10.0.0.0/33"], "'10.0.0.0/33' is not an IPv4 or IPv6 address or CIDR"),
    (["--ip-allow", "10.0.0.0/8,example.com"], "'example.com'"),
    (["--ip-allow", ""], "empty IP allowlist"),
    (["--rpm", "0"], "--rpm"),
    (["--max-parallel", "-2"], "--max-parallel"),
    (["--budget", "-0.01"], "0 or more"),
    (["--budget-period", "month"], "needs a budget"),
], ids=["cidr-prefix", "hostname", "empty", "rpm", "parallel", "budget", "period-alone"])
def test_create_refuses_bad_limits(project: Project, options: list[str], fragment: str) -> None:
    result = project.run("keys", "create", "dev-app-chat", *options)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr
    assert json.loads(project.ok("keys", "list", "--format", "json").stdout) == []


# --- update ----------------------------------------------------------------------------------


def test_update_limits_set_and_clear(project: Project) -> None:
    created = project.create_key("dev-app-chat", "--rpm", "60", "--tpm", "1000",
                                 "--budget", "20", "--ip-allow", "10.0.0.0/8")
    updated = json.loads(project.ok("keys", "update", "dev-app-chat", "--rpm", "120",
                                    "--tpm", "off", "--max-parallel", "2",
                                    "--budget-period", "day", "--json").stdout)
    assert updated["limits"] == {**NO_LIMITS, "rpm": 120, "max_parallel": 2,
                                 "budget_usd": "20", "budget_period": "day"}
    assert updated["ip_allowlist"] == ["10.0.0.0/8"]
    assert updated["id"] == created["id"] and "key" not in updated
    record = identify(project, created["key"])  # the same key text works, with new limits
    assert record.limits.rpm == 120 and record.limits.tpm is None

    cleared = json.loads(project.ok("keys", "update", created["id"], "--rpm", "off",
                                    "--max-parallel", "off", "--budget", "off",
                                    "--ip-allow", "off", "--json").stdout)
    assert cleared["limits"] == {**NO_LIMITS, "budget_period": "day"}
    assert cleared["ip_allowlist"] is None
    assert identify(project, created["key"]).ip_allowlist is None


def test_update_scope(project: Project) -> None:
    project.create_team("payments")
    project.create_team("search")
    created = project.create_key("dev-app-chat", "--team", "payments", "--owner", "ana",
                                 "--description", "chat", "--models", "gpt-4o-mini",
                                 "--max-tokens", "100", "--max-body-bytes", "4096")
    before = time.time()
    updated = json.loads(project.ok(
        "keys", "update", "dev-app-chat", "--team", "search", "--owner", "bo@example.com",
        "--models", "gpt-4o,gpt-4o-mini", "--endpoints", "chat.completions,models",
        "--max-tokens", "off", "--expires", "2d", "--json").stdout)
    assert (updated["team"], updated["owner"], updated["description"]) == (
        "search", "bo@example.com", "chat")
    assert updated["models"] == ["gpt-4o", "gpt-4o-mini"]
    assert updated["endpoints"] == ["chat.completions", "models"]
    assert (updated["max_tokens"], updated["max_body_bytes"]) == (None, 4096)
    expires = datetime.fromisoformat(updated["expires_at"]).timestamp()
    assert before + 2 * 86400 - 5 <= expires <= time.time() + 2 * 86400 + 5
    assert updated["created_at"] == created["created_at"]

    again = json.loads(project.ok(
        "keys", "update", "dev-app-chat", "--models", "off", "--endpoints", "off",
        "--expires", "off", "--max-body-bytes", "off", "--description", "", "--json").stdout)
    assert (again["models"], again["endpoints"], again["expires_at"], again["max_body_bytes"],
            again["description"]) == (None, None, None, None, None)
    assert again["owner"] == "bo@example.com"


@pytest.mark.parametrize(("options", "code", "fragment"), [
    (["--team", "nope"], 2, "No team named 'nope'. Create it first: keystead teams create NAME"),
    (["--ip-allow", "1.2.3.4/99"], 2, "'1.2.3.4/99' is not an IPv4 or IPv6"),
    (["--endpoints", "images"], 2, "Unknown endpoint(s): images"),
    (["--expires", "soon"], 2, "'soon' is not a duration"),
    (["--max-tokens", "0"], 2, "--max-tokens"),
    (["--budget", "lots"], 2, "--budget"),
    ([], 2, "nothing to change"),
], ids=["team", "cidr", "endpoint", "expires", "max-tokens", "budget", "nothing"])
def test_update_refuses_bad_input_and_changes_nothing(project: Project, options: list[str],
                                                      code: int, fragment: str) -> None:
    project.create_key("dev-app-chat", "--rpm", "5")
    before = project.ok("keys", "show", "dev-app-chat", "--json").stdout
    result = project.run("keys", "update", "dev-app-chat", *options)
    assert result.exit_code == code, result.output
    assert fragment in result.stderr
    assert project.ok("keys", "show", "dev-app-chat", "--json").stdout == before


def test_update_a_missing_or_revoked_key(project: Project) -> None:
    missing = project.run("keys", "update", "dev-app-none", "--rpm", "5")
    assert missing.exit_code == 1 and "No key with id or name 'dev-app-none'" in missing.stderr
    project.create_key("dev-app-gone")
    project.ok("keys", "revoke", "dev-app-gone")
    revoked = project.run("keys", "update", "dev-app-gone", "--rpm", "5")
    assert revoked.exit_code == 2
    assert "revoked; revocation is final" in revoked.stderr
    # A disabled key can still be changed.
    project.create_key("dev-app-paused")
    project.ok("keys", "disable", "dev-app-paused")
    paused = json.loads(project.ok("keys", "update", "dev-app-paused", "--rpm", "7",
                                   "--json").stdout)
    assert (paused["status"], paused["limits"]["rpm"]) == ("disabled", 7)


# --- through a running gateway ------------------------------------------------------------------


def test_remote_keys_with_limits(project: Project, remote: Remote) -> None:
    refused = remote.run("keys", "create", "dev-pay-api", "--team", "payments")
    assert refused.exit_code == 2
    assert "No team named 'payments'. Create it first: keystead teams create NAME" in \
        refused.stderr
    remote.ok("teams", "create", "payments")
    created = remote.json("keys", "create", "dev-pay-api", "--team", "payments", "--rpm", "30",
                          "--budget", "1.25", "--ip-allow", "192.0.2.1", "--expires", "1d",
                          "--json")
    assert created["limits"] == {**NO_LIMITS, "rpm": 30, "budget_usd": "1.25"}
    assert created["ip_allowlist"] == ["192.0.2.1/32"]
    shown = json.loads(project.ok("keys", "show", "dev-pay-api", "--json").stdout)
    assert shown == {k: v for k, v in created.items() if k != "key"}
    assert remote.ok("keys", "show", "dev-pay-api").stdout == project.ok(
        "keys", "show", "dev-pay-api").stdout

    updated = remote.json("keys", "update", "dev-pay-api", "--rpm", "off", "--tpm", "800",
                          "--ip-allow", "off", "--expires", "off", "--models", "gpt-4o-mini",
                          "--json")
    assert updated["limits"] == {**NO_LIMITS, "tpm": 800, "budget_usd": "1.25"}
    assert (updated["ip_allowlist"], updated["expires_at"], updated["models"]) == (
        None, None, ["gpt-4o-mini"])
    assert json.loads(project.ok("keys", "show", "dev-pay-api", "--json").stdout) == updated
    # The gateway that served the change uses it at once.
    record = remote.runtime.keys.identify(b"Bearer " + created["key"].encode())
    assert record.limits.tpm == 800 and record.ip_allowlist is None

    with_expiry = remote.json("keys", "update", "dev-pay-api", "--expires", "3h", "--json")
    expires = datetime.fromisoformat(with_expiry["expires_at"]).timestamp()
    assert abs(expires - (time.time() + 3 * 3600)) < 10


@pytest.mark.parametrize(("args", "code", "fragment"), [
    (["keys", "update", "dev-app-chat", "--team", "nope"], 2, "No team named 'nope'"),
    (["keys", "update", "dev-app-chat", "--ip-allow", "::1/200"], 2, "'::1/200'"),
    (["keys", "update", "dev-app-gone", "--rpm", "1"], 2, "revocation is final"),
    (["keys", "update", "dev-app-none", "--rpm", "1"], 1, "No key with id or name"),
    (["keys", "create", "dev-app-new", "--ip-allow", "10.0.0.0/8,nope"], 2, "'nope'"),
], ids=["team", "cidr", "revoked", "missing", "create-cidr"])
def test_remote_key_errors_exit_like_embedded(project: Project, remote: Remote,
                                              args: list[str], code: int,
                                              fragment: str) -> None:
    project.create_key("dev-app-chat")
    project.create_key("dev-app-gone")
    project.ok("keys", "revoke", "dev-app-gone")
    far, near = remote.run(*args), project.run(*args)
    assert (far.exit_code, near.exit_code) == (code, code)
    assert far.stderr == near.stderr
    assert fragment in far.stderr


# --- usage filters -------------------------------------------------------------------------------


def _insert_usage(project: Project) -> None:
    now = time.time()

    def row(i: int, *, key: tuple[str, str], team: str, env: str, model: str, route: str,
            feature: str, provider: str = "mock", cost: str = "0.001",
            age: float = 600) -> UsageRecord:
        return UsageRecord(request_id=f"req-{i}", ts=now - age, endpoint="chat.completions",
                           status=200, key_id=key[0], key_name=key[1], team=team, env=env,
                           feature=feature, route=route, model_requested=model,
                           model_served=model, provider=provider, prompt_tokens=10,
                           completion_tokens=5, cost_usd=Decimal(cost), latency_ms=10.0)

    pay = ("paykey01", "prod-pay-api")
    search = ("srchkey1", "dev-search-api")

    async def insert() -> None:
        store = SQLStore(f"sqlite:///{project.db}")
        await store.open()
        try:
            await store.insert_usage([
                row(0, key=pay, team="payments", env="prod", model="gpt-4o-mini",
                    route="checkout", feature="summary"),
                row(1, key=pay, team="payments", env="prod", model="gpt-4o",
                    route="checkout", feature="summary", cost="0.01"),
                row(2, key=pay, team="payments", env="prod", model="gpt-4o",
                    route="refunds", feature="classify", cost="0.02", age=2 * 3600),
                row(3, key=search, team="search", env="dev", model="gpt-4o-mini",
                    route="query", feature="summary", provider="other"),
            ])
        finally:
            await store.close()

    asyncio.run(insert())


def _usage(project: Project, *args: str) -> dict[Any, dict[str, Any]]:
    rows = json.loads(project.ok("usage", *args, "--format", "json").stdout)
    return {row[next(iter(row))]: row for row in rows}


def test_usage_by_route_and_hour_with_filters(project: Project) -> None:
    project.ok("keys", "list")  # opens the store: the schema exists before rows go in
    _insert_usage(project)
    by_route = _usage(project, "--by", "route")
    assert {route: row["requests"] for route, row in by_route.items()} == {
        "checkout": 2, "refunds": 1, "query": 1}
    assert Decimal(by_route["checkout"]["cost_usd"]) == Decimal("0.011")

    assert {r: row["requests"] for r, row in _usage(project, "--by", "route", "--team",
                                                     "payments").items()} == {
        "checkout": 2, "refunds": 1}
    by_model = _usage(project, "--by", "model", "--team", "payments", "--route", "checkout")
    assert {m: row["requests"] for m, row in by_model.items()} == {"gpt-4o": 1,
                                                                   "gpt-4o-mini": 1}
    # A key is found by its id or its name.
    for key in ("paykey01", "prod-pay-api"):
        assert {f: row["requests"] for f, row in _usage(
            project, "--by", "feature", "--key", key).items()} == {"summary": 2, "classify": 1}
    assert _usage(project, "--by", "team", "--env", "dev").keys() == {"search"}
    assert _usage(project, "--by", "key", "--provider", "other").keys() == {"dev-search-api"}
    assert _usage(project, "--by", "env", "--model", "gpt-4o", "--feature",
                  "classify")["prod"]["requests"] == 1
    assert _usage(project, "--by", "team", "--team", "nobody") == {}

    hours = json.loads(project.ok("usage", "--by", "hour", "--format", "json").stdout)
    assert sum(row["requests"] for row in hours) == 4
    assert 1 <= len(hours) <= 3 and list(hours[0]) == ["hour", "requests", "errors",
                                                       "prompt_tokens", "completion_tokens",
                                                       "cached_tokens", "cost_usd",
                                                       "avg_latency_ms"]
    table = project.ok("usage", "--by", "route", "--team", "search").stdout.splitlines()
    assert table[0].split()[0] == "ROUTE" and table[1].split()[:2] == ["query", "1"]


def test_remote_usage_with_filters_matches_embedded(project: Project, remote: Remote) -> None:
    _insert_usage(project)
    for args in (["--by", "route"], ["--by", "model", "--team", "payments"],
                 ["--by", "route", "--key", "paykey01", "--model", "gpt-4o"],
                 ["--by", "hour", "--env", "prod"], ["--by", "day", "--provider", "other"]):
        embedded = project.ok("usage", *args, "--format", "json").stdout
        far = remote.ok("usage", *args, "--format", "json").stdout
        assert json.loads(far) == json.loads(embedded), args
        assert json.loads(far), args
