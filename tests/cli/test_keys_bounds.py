"""Values past what the store, Redis or a token can hold are refused by the services with the
field named (exit 2), from the CLI as from the admin API: never a traceback."""

from __future__ import annotations

import json

import pytest

from cli.helpers import Project


@pytest.mark.parametrize(("options", "fragment"), [
    (["--max-tokens", str(2**64)], "max_tokens must be from 1 to 2147483647"),
    (["--rpm", str(2**63)], "from 1 to 1000000000000"),
    (["--tpd", str(10**13)], "from 1 to 1000000000000"),
    (["--budget", "1e30"], "at most 1000000000000"),
    (["--budget", "0.0000000001"], "9 decimals"),
], ids=["max-tokens", "rpm", "tpd", "budget-huge", "budget-places"])
def test_values_past_the_bounds_are_refused_naming_the_field(project: Project,
                                                              options: list[str],
                                                              fragment: str) -> None:
    result = project.run("keys", "create", "dev-app-chat", *options)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert json.loads(project.ok("keys", "list", "--format", "json").stdout) == []
