"""The examples in docs/ run, and the references list what the code has.

A doc example is marked with `<!-- docs-example: KIND -->` on the line before its code block.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
    for name, command in cli.commands.items():
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
