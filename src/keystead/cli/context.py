"""What every `keystead` command shares: the invocation's state (config, --server, admin token)
and the wrapper that turns the errors a user can fix into one line and an exit code.

Its own module so that the commands and `cli/main.py` (which registers them) do not import each
other.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from keystead.config.load import ConfigError, LoadedConfig, load_config
from keystead.vault.envelope import VaultError

if TYPE_CHECKING:
    from keystead.cli.backend import Backend

__all__ = ["State", "friendly"]

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
