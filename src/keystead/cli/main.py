"""`keystead`: one command for the gateway, its keys, teams, providers, usage and vault.

Commands that change state work on this machine's store (embedded) or, with --server, on a
running gateway through its admin API. Failures print one line that says what to fix, exit 2 for
bad input or configuration, 1 for everything else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from keystead import __version__
from keystead.config.load import ConfigError, LoadedConfig, load_config
from keystead.vault.envelope import VaultError

if TYPE_CHECKING:
    from keystead.cli.backend import Backend

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


class State:
    def __init__(self, config: str | None, server: str | None, admin_token: str | None):
        self.config_path = config
        self.server = server
        self.admin_token = admin_token
        self._loaded: LoadedConfig | None = None

    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            self._loaded = load_config(self.config_path)
        return self._loaded

    def backend(self) -> Backend:
        # Imported here: the backends pull in the store and HTTP stacks, which `--help`,
        # `init` and `mock-upstream` do not need.
        from keystead.cli.backend import EmbeddedBackend, RemoteBackend

        if self.server:
            token = self.admin_token or os.environ.get("KEYSTEAD_ADMIN_TOKEN")
            if token is None:
                try:
                    loaded = self.loaded()
                    if loaded.config.admin.token is not None:
                        token = loaded.config.admin.token.get_secret_value()
                except ConfigError:
                    pass
            return RemoteBackend(self.server, token)
        return EmbeddedBackend(self.loaded())


def friendly(func: F) -> F:
    """Turn the errors a user can fix into one clear line and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except VaultError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:
            from keystead.cli.backend import BackendError

            if not isinstance(exc, BackendError):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(2 if exc.status == 400 else 1)  # 400: the input was wrong

    return wrapper  # type: ignore[return-value]


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
        events,
        incident,
        keys,
        providers,
        routes,
        run,
        scan,
        setup,
        teams,
        tokens,
        usage,
        vault,
    )

    for module in (keys, teams, providers, routes, run, setup, usage, vault, scan, incident,
                   tokens, events):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="keystead")


__all__ += ["State", "cli", "friendly"]
