"""`keystead`: one command for the gateway, its keys, teams, providers, usage and vault.

Commands that change state work on this machine's store (embedded) or, with --server, on a
running gateway through its admin API. Failures print one line that says what to fix, exit 2 for
bad input or configuration, 1 for everything else.
"""

from __future__ import annotations

import click

from keystead import __version__
from keystead.cli.context import State

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keystead")
@click.option("--config", "config", envvar="KEYSTEAD_CONFIG", type=click.Path(dir_okay=False),
              help="Config file (default: $KEYSTEAD_CONFIG, ./keystead.yaml, embedded defaults).")
@click.option("--server", envvar="KEYSTEAD_SERVER", metavar="URL",
              help="Act on a running gateway through its admin API instead of the local store.")
@click.option("--admin-token", envvar="KEYSTEAD_ADMIN_TOKEN", metavar="TOKEN",
              help="Admin token for --server (default: $KEYSTEAD_ADMIN_TOKEN).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, server: str | None,
        admin_token: str | None) -> None:
    """keystead: an OpenAI-compatible gateway that keeps provider keys in a vault."""
    ctx.obj = State(config, server, admin_token)


def _register() -> None:
    from keystead.cli import (
        demo,
        events,
        incident,
        keys,
        mocks,
        providers,
        reload,
        routes,
        scan,
        serve,
        setup,
        teams,
        tokens,
        usage,
        vault,
    )

    for module in (keys, teams, providers, routes, serve, demo, mocks, setup, usage, vault, scan,
                   incident, tokens, events, reload):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="keystead")

