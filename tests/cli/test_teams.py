"""`keystead teams create|list|show|update`, on the store (embedded) and through a running
gateway (--server): the same output either way."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cli.helpers import Project, Remote

NO_LIMITS = {"rpm": None, "rpd": None, "tpm": None, "tpd": None, "max_parallel": None,
             "budget_usd": None, "budget_period": "month"}
TEAM_FIELDS = ["name", "description", "owner", "limits", "ip_allowlist", "created_at"]


def lines(text: str) -> dict[str, str]:
    """`name  value` lines (show_record's output) as a dict."""
    return dict(line.split(None, 1) for line in text.splitlines() if line.strip())


def test_create_with_every_option_then_show(project: Project) -> None:
    created = project.create_team(
        "payments", "--description", "checkout and refunds", "--owner", "ana@example.com",
        "--rpm", "600", "--rpd", "100000", "--tpm", "200000", "--tpd", "5000000",
        "--max-parallel", "20", "--budget", "250.50", "--budget-period", "day",
        "--ip-allow", "10.1.2.3/8, 2001:db8::/32,203.0.113.7")
    assert list(created) == TEAM_FIELDS
    assert created["limits"] == {"rpm": 600, "rpd": 100000, "tpm": 200000, "tpd": 5000000,
                                 "max_parallel": 20, "budget_usd": "250.50",
                                 "budget_period": "day"}
    # Stored in canonical form: a host bit set in a CIDR is read as its network.
    assert created["ip_allowlist"] == ["10.0.0.0/8", "2001:db8::/32", "203.0.113.7/32"]
    assert (created["description"], created["owner"]) == ("checkout and refunds",
                                                          "ana@example.com")
    assert json.loads(project.ok("teams", "show", "payments", "--json").stdout) == created

    shown = lines(project.ok("teams", "show", "payments").stdout)
    assert shown["limits"] == ("rpm=600 rpd=100000 tpm=200000 tpd=5000000 max_parallel=20 "
                               "budget=250.50 USD/day")
    assert shown["ip_allowlist"] == "10.0.0.0/8,2001:db8::/32,203.0.113.7/32"
    assert shown["owner"] == "ana@example.com"
    (row,) = project.sql("SELECT name, owner FROM teams")
    assert row == ("payments", "ana@example.com")


def test_a_team_without_options_has_no_limits(project: Project) -> None:
    created = project.create_team("search")
    assert created["limits"] == NO_LIMITS
    assert created["ip_allowlist"] is None and created["owner"] is None
    shown = lines(project.ok("teams", "show", "search").stdout)
    assert (shown["limits"], shown["ip_allowlist"], shown["description"]) == ("-", "-", "-")


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_list(project: Project, fmt: str) -> None:
    project.create_team("search")
    project.create_team("payments", "--rpm", "60", "--budget", "10")
    result = project.ok("teams", "list", "--format", fmt)
    if fmt == "json":
        rows = json.loads(result.stdout)
        assert [r["name"] for r in rows] == ["payments", "search"]
        assert rows[0]["limits"] == {**NO_LIMITS, "rpm": 60, "budget_usd": "10"}
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [(r["name"], r["limits"]) for r in rows] == [
            ("payments", "rpm=60 budget=10 USD/month"), ("search", "-")]
    else:
        table = result.stdout.splitlines()
        assert table[0].split() == ["NAME", "OWNER", "LIMITS", "IP_ALLOWLIST", "DESCRIPTION",
                                    "CREATED_AT"]
        assert table[1].startswith("payments") and "rpm=60 budget=10 USD/month" in table[1]
        assert table[2].split()[:4] == ["search", "-", "-", "-"]


def test_list_without_teams_says_so(project: Project) -> None:
    assert json.loads(project.ok("teams", "list", "--format", "json").stdout) == []
    assert project.ok("teams", "list", "--format", "csv").stdout.strip() == \
        "name,owner,limits,ip_allowlist,description,created_at"
    assert project.ok("teams", "list").stdout.strip() == \
        "no teams yet; create one with `keystead teams create NAME`"


def test_update_sets_and_clears_only_what_is_given(project: Project) -> None:
    project.create_team("payments", "--owner", "ana@example.com", "--description", "pay",
                        "--rpm", "60", "--tpm", "1000", "--budget", "10",
                        "--ip-allow", "10.0.0.0/8")
    updated = json.loads(project.ok("teams", "update", "payments", "--rpm", "off",
                                    "--max-parallel", "4", "--budget-period", "day",
                                    "--json").stdout)
    assert updated["limits"] == {**NO_LIMITS, "tpm": 1000, "max_parallel": 4,
                                 "budget_usd": "10", "budget_period": "day"}
    assert updated["ip_allowlist"] == ["10.0.0.0/8"]  # not given: unchanged
    assert (updated["owner"], updated["description"]) == ("ana@example.com", "pay")

    cleared = json.loads(project.ok("teams", "update", "payments", "--budget", "off",
                                    "--tpm", "OFF", "--max-parallel", "off", "--ip-allow", "off",
                                    "--owner", "", "--json").stdout)
    assert cleared["limits"] == {**NO_LIMITS, "budget_period": "day"}
    assert cleared["ip_allowlist"] is None and cleared["owner"] is None
    assert cleared["description"] == "pay"
    assert json.loads(project.ok("teams", "show", "payments", "--json").stdout) == cleared

    # The table form prints the team after the change.
    shown = lines(project.ok("teams", "update", "payments", "--ip-allow", "192.0.2.0/24",
                             "--description", "payments team").stdout)
    assert (shown["ip_allowlist"], shown["description"]) == ("192.0.2.0/24", "payments team")


def test_update_needs_a_change_and_an_existing_team(project: Project) -> None:
    project.create_team("payments")
    nothing = project.run("teams", "update", "payments")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr
    missing = project.run("teams", "update", "nope", "--rpm", "5")
    assert missing.exit_code == 1
    assert "No team named 'nope'" in missing.stderr and "keystead teams list" in missing.stderr
    shown = project.run("teams", "show", "nope")
    assert shown.exit_code == 1 and "No team named 'nope'" in shown.stderr


@pytest.mark.parametrize("name", ["Payments", "pay_ments", "pay ments", "x" * 65, "équipe"])
def test_a_bad_team_name_shows_the_rule(project: Project, name: str) -> None:
    result = project.run("teams", "create", name)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "lowercase letters, digits or '-'" in result.stderr and "1 to 64" in result.stderr
    assert project.sql("SELECT count(*) FROM teams") == [(0,)]


def test_a_duplicate_team_is_refused(project: Project) -> None:
    project.create_team("payments", "--rpm", "5")
    again = project.run("teams", "create", "payments", "--rpm", "9")
    assert again.exit_code == 2
    assert "exists already" in again.stderr and "keystead teams update" in again.stderr
    assert json.loads(project.ok("teams", "show", "payments", "--json").stdout)[
        "limits"]["rpm"] == 5


@pytest.mark.parametrize(("options", "fragments"), [
    (["--ip-allow", "10.0.0.300/8"], ["'10.0.0.300/8' is not an IPv4 or IPv6", "10.0.0.0/8"]),
    (["--ip-allow", "10.0.0.0/8,localhost"], ["'localhost'"]),
    (["--ip-allow", ","], ["empty IP allowlist", "--ip-allow off"]),
    (["--ip-allow", "off"], ["'off' is not an IPv4"]),  # create has nothing to clear
    (["--rpm", "0"], ["--rpm", "0"]),
    (["--tpm", "many"], ["--tpm", "many"]),
    (["--budget", "-1"], ["--budget", "0 or more"]),
    (["--budget", "ten"], ["--budget", "e.g. 25 or 12.50"]),
    (["--budget", "NaN"], ["--budget"]),
    (["--budget-period", "week"], ["--budget-period", "week"]),
    (["--budget-period", "day"], ["needs a budget"]),
    (["--rpm", "off"], ["--rpm"]),  # off only in update
], ids=["cidr", "hostname", "empty", "off-in-create", "rpm-zero", "tpm-word", "budget-negative",
        "budget-word", "budget-nan", "period", "period-without-budget", "rpm-off"])
def test_bad_limits_are_refused_with_exit_2(project: Project, options: list[str],
                                             fragments: list[str]) -> None:
    result = project.run("teams", "create", "payments", *options)
    assert result.exit_code == 2, result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert json.loads(project.ok("teams", "list", "--format", "json").stdout) == []


def test_update_refuses_bad_values_and_changes_nothing(project: Project) -> None:
    before = project.create_team("payments", "--rpm", "5", "--ip-allow", "10.0.0.0/8")
    for options in (["--ip-allow", "10.0.0.0/33"], ["--rpm", "0"], ["--budget", "-3"],
                    ["--ip-allow", ""]):
        result = project.run("teams", "update", "payments", *options)
        assert result.exit_code == 2, (options, result.output)
    assert json.loads(project.ok("teams", "show", "payments", "--json").stdout) == before


# --- through a running gateway ------------------------------------------------------------------


def test_remote_teams_match_embedded(project: Project, remote: Remote) -> None:
    created = remote.json("teams", "create", "payments", "--owner", "ana@example.com",
                          "--rpm", "60", "--budget", "12.345", "--ip-allow", "10.1.0.0/16",
                          "--json")
    assert created["limits"] == {**NO_LIMITS, "rpm": 60, "budget_usd": "12.345"}
    assert created["ip_allowlist"] == ["10.1.0.0/16"]
    remote.ok("teams", "create", "search")
    # The embedded CLI reads the same store and prints the same thing.
    for command in (["teams", "show", "payments", "--json"],
                    ["teams", "list", "--format", "json"]):
        assert remote.json(*command) == json.loads(project.ok(*command).stdout)
    assert remote.ok("teams", "list").stdout == project.ok("teams", "list").stdout
    assert remote.ok("teams", "show", "payments").stdout == project.ok(
        "teams", "show", "payments").stdout

    updated = remote.json("teams", "update", "payments", "--rpm", "off", "--tpm", "5000",
                          "--budget-period", "day", "--ip-allow", "off", "--json")
    assert updated["limits"] == {**NO_LIMITS, "tpm": 5000, "budget_usd": "12.345",
                                 "budget_period": "day"}
    assert updated["ip_allowlist"] is None and updated["owner"] == "ana@example.com"
    assert json.loads(project.ok("teams", "show", "payments", "--json").stdout) == updated


@pytest.mark.parametrize(("args", "code", "fragment"), [
    (["teams", "create", "Bad_Name"], 2, "lowercase letters, digits or '-'"),
    (["teams", "create", "payments"], 2, "exists already"),
    (["teams", "create", "ok", "--ip-allow", "10.0.0.0/40"], 2, "'10.0.0.0/40'"),
    (["teams", "update", "payments", "--ip-allow", "nope"], 2, "'nope' is not an IPv4"),
    (["teams", "show", "nope"], 1, "No team named 'nope'"),
    (["teams", "update", "nope", "--rpm", "1"], 1, "No team named 'nope'"),
], ids=["name", "duplicate", "cidr-create", "cidr-update", "show-missing", "update-missing"])
def test_remote_errors_exit_like_embedded(project: Project, remote: Remote, args: list[str],
                                          code: int, fragment: str) -> None:
    project.create_team("payments")
    far, near = remote.run(*args), project.run(*args)
    assert (far.exit_code, near.exit_code) == (code, code)
    assert far.stderr == near.stderr
    assert far.stderr.startswith("error: ") and fragment in far.stderr


def test_remote_with_a_wrong_token(remote: Remote) -> None:
    result = remote.run("teams", "list", token="wrong")
    assert result.exit_code == 1
    assert "admin token" in result.stderr
