"""The examples in docs/ run, and the references list what the code has.

A doc example is marked with `<!-- docs-example: KIND -->` on the line before its code block.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from e2e.harness import Gateway, child_env
from keystead import errors
from keystead.cli.main import cli
from keystead.config.load import parse_config

DOCS = Path(__file__).resolve().parents[2] / "docs"


def examples(document: str, kind: str) -> list[str]:
    text = (DOCS / document).read_text()
    pattern = rf"<!-- docs-example: {kind} -->\s*```\w*\n(.*?)```"
    found = re.findall(pattern, text, flags=re.S)
    assert found, f"no {kind} example in docs/{document}"
    return found


@pytest.mark.e2e
def test_the_quickstart_python_example_runs_against_a_gateway(gateway: Gateway) -> None:
    (code,) = examples("quickstart.md", "python")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env=child_env({"KEYSTEAD_URL": gateway.base_url,
                       "KEYSTEAD_KEY": gateway.keys["app"]}), check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("This is a mock reply")
    assert "2 embeddings" in lines
    assert "gpt-4o-mini" in lines[-1]


def test_the_configuration_reference_example_is_a_valid_config() -> None:
    import yaml

    (text,) = examples("configuration.md", "config")
    config = parse_config(yaml.safe_load(text), {
        "KEYSTEAD_MASTER_KEY": "x", "KEYSTEAD_ADMIN_TOKEN": "y", "OPENAI_API_KEY": "z"},
        source="docs/configuration.md")
    assert set(config.providers) == {"mock", "openai"}
    assert "my-finetune" in config.prices


def test_the_configuration_reference_documents_every_setting() -> None:
    from keystead.config.model import Config

    text = (DOCS / "configuration.md").read_text()
    for section, model in Config.model_fields.items():
        assert f"## `{section}`" in text, f"docs/configuration.md lacks the {section} section"
        annotation = model.annotation
        fields = getattr(annotation, "model_fields", {})
        for name in fields:
            assert f"`{name}`" in text or f"{name}:" in text, f"{section}.{name} undocumented"


def test_the_cli_reference_lists_every_command() -> None:
    text = (DOCS / "cli.md").read_text()
    ctx = click.Context(cli)
    names = cli.list_commands(ctx)  # registered lazily: cli.commands fills as they are used
    assert len(names) > 10
    for name in names:
        command = cli.get_command(ctx, name)
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for sub in subcommands:
                assert f"`{name} {sub}" in text, f"docs/cli.md lacks `{name} {sub}`"
        else:
            assert f"`{name}" in text, f"docs/cli.md lacks `{name}`"


def test_the_error_reference_lists_every_error_code() -> None:
    text = (DOCS / "errors.md").read_text()
    codes = {cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.GatewayError)}
    codes |= {"upstream_auth_failed", "invalid_key_name", "duplicate_name"}
    generic = {"internal_error", "invalid_request", "permission_denied", "not_found",
               "upstream_error"}
    for code in sorted(codes - generic):
        assert f"`{code}`" in text, f"docs/errors.md lacks the code {code}"


def test_the_cli_reference_example_runs_and_does_what_it_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command of the docs' limits example, in order, on a fresh store (in-process: the
    commands are the same as from a shell, without an interpreter start-up each)."""
    from click.testing import CliRunner

    from keystead.vault.envelope import MasterKey

    (text,) = examples("cli.md", "cli")
    commands = [shlex.split(line) for line in text.replace("\\\n", " ").splitlines()
                if line.strip()]
    assert len(commands) >= 5 and all(c[0] == "keystead" for c in commands)
    config = tmp_path / "keystead.yaml"
    config.write_text("database:\n  url: sqlite:///keystead.db\n"
                      "vault:\n  master_key: ${KEYSTEAD_MASTER_KEY}\n")
    for var in [v for v in os.environ if v.startswith("KEYSTEAD_")]:
        monkeypatch.delenv(var)
    env = {"KEYSTEAD_MASTER_KEY": MasterKey.generate_text()}

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--config", str(config), *args], env=env,
                                    catch_exceptions=False)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result.stdout

    for command in commands:
        run(*command[1:])
    # What the text after the example says the commands did.
    key = json.loads(run("keys", "show", "prod-checkout-api-01", "--json"))
    assert key["team"] == "payments"
    assert key["limits"] == {"rpm": None, "rpd": None, "tpm": None, "tpd": None,
                             "max_parallel": 4, "budget_usd": "25", "budget_period": "day"}
    team = json.loads(run("teams", "show", "payments", "--json"))
    assert (team["limits"]["rpm"], team["limits"]["tpm"]) == (600, None)
    assert (team["limits"]["budget_usd"], team["limits"]["budget_period"]) == ("500", "month")
    assert team["ip_allowlist"] == ["10.20.0.0/16"]
