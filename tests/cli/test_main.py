"""`keystead` itself: every command registered lazily, and `--help` listing each with the help
line the command gives itself."""

from __future__ import annotations

import importlib
import pkgutil

import click
import pytest
from click.testing import CliRunner

import keystead.cli
from keystead.cli.main import COMMAND_MODULES, LazyGroup, cli


def _command_modules() -> dict[str, click.Command]:
    """Every command a module of keystead.cli offers (its COMMANDS), by name."""
    found: dict[str, click.Command] = {}
    for info in pkgutil.iter_modules(keystead.cli.__path__):
        module = importlib.import_module(f"keystead.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            assert command.name not in found, f"{command.name} is offered twice"
            found[str(command.name)] = command
    return found


def test_every_command_module_is_registered_under_its_module() -> None:
    offered = _command_modules()
    assert sorted(COMMAND_MODULES) == sorted(offered), "add it to cli/main.py COMMAND_MODULES"
    for name, command in offered.items():
        assert command.callback is not None
        assert command.callback.__module__ == f"keystead.cli.{COMMAND_MODULES[name][0]}"


@pytest.mark.parametrize("limit", [20, 45, 62, 200])
def test_help_lines_are_the_commands_own(limit: int) -> None:
    for name, command in _command_modules().items():
        stand_in = click.Command(name, help=COMMAND_MODULES[name][1])
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), (
            f"{name}: its help line in cli/main.py differs from the command's docstring")


def test_help_lists_every_command_without_importing_them() -> None:
    group = LazyGroup("keystead", lazy=COMMAND_MODULES)  # a fresh group: nothing imported yet
    result = CliRunner().invoke(group, ["--help"], terminal_width=100)
    assert result.exit_code == 0
    listed = result.stdout.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed] == sorted(COMMAND_MODULES)
    usage = next(line for line in listed if line.split()[0] == "usage")
    assert usage.split(None, 1)[1].startswith("Requests, tokens and cost from the usage ledger")
    assert group.commands == {}


def test_a_command_runs_and_its_own_help_works() -> None:
    result = CliRunner().invoke(cli, ["keys", "--help"])
    assert result.exit_code == 0 and "Virtual keys" in result.stdout
    assert "keys" in cli.commands  # imported when asked for, then kept


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["kyes", "list"])
    assert result.exit_code == 2 and "No such command 'kyes'" in result.stderr
