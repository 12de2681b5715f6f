"""`keystead`: one command for the gateway, its keys, teams, providers, usage and vault.

Commands that change state work on this machine's store (embedded) or, with --server, on a
running gateway through its admin API. Failures print one line that says what to fix, exit 2 for
bad input or configuration, 1 for everything else.

Commands are registered lazily: the group knows each command's name, module and help line, and
imports the module only when the command runs (or its own --help is asked for). Starting Python
with every command module costs a quarter of a second; a command imports what it needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from keystead import __version__
from keystead.cli.context import State

__all__ = ["COMMAND_MODULES", "LazyGroup", "cli", "main"]

# name -> (module in keystead.cli, its help line as `keystead --help` shows it). A new command
# module adds a line here (tests/cli/test_main.py fails until it does, and when a help line
# no longer matches the command's own).
COMMAND_MODULES: dict[str, tuple[str, str]] = {
    "alerts": ("alerts", "Alert rules and their state; test the channels, silence an alert."),
    "check": ("check", "Send the smallest request through each provider key and route; exit 1 "
                       "if one fails."),
    "demo": ("demo", "Run the gateway with built-in mock providers: no account, no network."),
    "events": ("events", "The audit trail, newest first."),
    "incident": ("incident", "Stop a leaked key everywhere, issue its replacement and show what "
                             "it did."),
    "init": ("setup", "Write keystead.yaml, a .env with a new master key and admin token, and "
                      ".gitignore."),
    "keys": ("keys", "Virtual keys: one per service and environment."),
    "mock-anthropic": ("mocks", "Serve the mock Anthropic provider on its own (Messages API "
                                "wire format)."),
    "mock-upstream": ("mocks", "Serve the built-in mock provider on its own (OpenAI wire "
                               "format)."),
    "providers": ("providers", "Upstream providers and where their keys live."),
    "reload": ("reload", "Make every gateway re-read its config file (same as SIGHUP, on every "
                         "replica)."),
    "routes": ("routes", "Routes (aliases) and the health of their deployments."),
    "scan": ("scan", "Find provider and keystead keys in files, standard input (-) or git "
                     "history."),
    "serve": ("serve", "Run the gateway."),
    "teams": ("teams", "Teams: the keys they own share the team's limits, budget and IP "
                       "allowlist."),
    "tokens": ("tokens", "Short-lived tokens: minted from a key, narrower than it, gone in "
                         "minutes."),
    "usage": ("usage", "Requests, tokens and cost from the usage ledger, grouped one way and "
                       "filtered by the others."),
    "vault": ("vault", "The encrypted store of provider keys."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when one is run (click's LazyGroup pattern), and
    whose help lists them from `lazy` without importing any."""

    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module = importlib.import_module(f"keystead.cli.{self.lazy[cmd_name][0]}")
        command: click.Command = next(c for c in module.COMMANDS if c.name == cmd_name)
        self.add_command(command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.commands:  # added directly, or imported already
                command = self.commands[name]
                if not command.hidden:
                    rows.append((name, command.get_short_help_str(limit)))
            else:  # a stand-in shortens the line exactly as the command itself would
                stand_in = click.Command(name, help=self.lazy[name][1])
                rows.append((name, stand_in.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMAND_MODULES,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keystead")
@click.option("--config", "config", envvar="KEYSTEAD_CONFIG", type=click.Path(dir_okay=False),
              help="Config file (default: $KEYSTEAD_CONFIG, else ./keystead.yaml).")
@click.option("--server", envvar="KEYSTEAD_SERVER", metavar="URL",
              help="Act on a running gateway through its admin API instead of the local store.")
@click.option("--admin-token", envvar="KEYSTEAD_ADMIN_TOKEN", metavar="TOKEN",
              help="Admin token for --server (default: $KEYSTEAD_ADMIN_TOKEN).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, server: str | None,
        admin_token: str | None) -> None:
    """keystead: an OpenAI-compatible gateway that keeps provider keys in a vault."""
    ctx.obj = State(config, server, admin_token)


def main() -> None:
    cli(prog_name="keystead")
