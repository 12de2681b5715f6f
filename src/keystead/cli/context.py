"""What every `keystead` command shares: the invocation's state (config, --server, admin token)
and the wrapper that turns the errors a user can fix into one line and an exit code.

Its own module so that the commands and `cli/main.py` (which registers them) do not import each
other. It imports nothing heavy: the config's models, the store and the HTTP stacks are imported
by the command that needs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from keystead.cli.backend import Backend
    from keystead.cli.embedded import EmbeddedBackend
    from keystead.config.load import LoadedConfig

__all__ = ["State", "exit_code", "friendly"]

F = TypeVar("F", bound=Callable[..., Any])


class State:
    def __init__(self, config: str | None, server: str | None, admin_token: str | None):
        self.config_path = config
        self.server = server
        self.admin_token = admin_token
        self._loaded: LoadedConfig | None = None
        self._embedded: EmbeddedBackend | None = None

    def loaded(self) -> LoadedConfig:
        """The config of this invocation. Without a file it is refused (ConfigError) unless
        KEYSTEAD_DATABASE_URL says where the store is: the built-in defaults would otherwise
        create a `keystead.db` in whatever directory the command ran in."""
        from keystead.config.load import ConfigError, load_config

        if self._loaded is None:
            loaded = load_config(self.config_path)
            if loaded.path is None and not os.environ.get("KEYSTEAD_DATABASE_URL"):
                raise ConfigError(
                    f"no keystead.yaml in {Path.cwd()}, and neither --config nor "
                    "KEYSTEAD_CONFIG names one: run `keystead init` to write one, or pass "
                    "--config FILE / set KEYSTEAD_CONFIG (to run on the built-in defaults "
                    "instead, set KEYSTEAD_DATABASE_URL)")
            self._loaded = loaded
        return self._loaded

    def backend(self) -> Backend:
        if self.server:
            from keystead.cli.remote import RemoteBackend

            token = self.admin_token or os.environ.get("KEYSTEAD_ADMIN_TOKEN")
            if token is None:
                from keystead.config.load import read_admin_token

                token = read_admin_token(self.config_path)
            return RemoteBackend(self.server, token)
        return self.embedded()

    def embedded(self) -> EmbeddedBackend:
        """This machine's store, whatever --server says (`vault rotate-master`): one for the
        command, closed with it."""
        if self._embedded is None:
            from keystead.cli.embedded import EmbeddedBackend

            self._embedded = EmbeddedBackend(self.loaded())
            click.get_current_context().call_on_close(self._embedded.close)
        return self._embedded


def exit_code(exc: BaseException) -> int | None:
    """The exit code of an error a user can fix (2: bad input or configuration, 1: anything
    else that has a message for them); None for a bug, which keeps its traceback."""
    # Imported here, once something failed: a command that succeeds never loads them.
    from keystead.cli.backend import BackendError
    from keystead.config.load import ConfigError
    from keystead.vault.envelope import MasterKeyError, VaultError

    if isinstance(exc, ConfigError | MasterKeyError):  # the key: missing, malformed, not ours
        return 2
    if isinstance(exc, BackendError):
        return 2 if exc.status == 400 else 1  # 400: the input was wrong
    if isinstance(exc, VaultError):
        return 1
    return None


def friendly(func: F) -> F:
    """Turn the errors a user can fix into one clear line and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            code = exit_code(exc)
            if code is None:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(code)

    return wrapper  # type: ignore[return-value]
