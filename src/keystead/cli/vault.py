"""`keystead vault rotate-master [--new-key-stdin] [--write-env]`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from keystead.cli.context import State, friendly


@click.group("vault")
def vault() -> None:
    """The encrypted store of provider keys."""


@vault.command("rotate-master")
@click.option("--new-key-stdin", is_flag=True,
              help="Read the new master key from stdin instead of generating one.")
@click.option("--write-env", is_flag=True,
              help="Put the new key into the .env beside the config (the one `keystead init` "
                   "wrote) instead of printing it; its other lines stay as they are.")
@click.pass_obj
@friendly
def rotate_master(state: State, new_key_stdin: bool, write_env: bool) -> None:
    """Re-seal every data key under a new master key.

    Runs on the local store with the current master key from the environment. Prints the new
    key once (or, with --write-env, writes it into the .env): put it in place of
    KEYSTEAD_MASTER_KEY, then restart the gateways.
    """
    from keystead.vault.envelope import MasterKey

    # Before the config is loaded, which copies the .env into the environment.
    from_environment = set(os.environ)
    new_key = sys.stdin.readline().strip() if new_key_stdin else MasterKey.generate_text()
    MasterKey.from_text(new_key)  # refuse a malformed key before touching anything
    backend = state.embedded()
    staged = env_file = None
    if write_env:
        env_file, variable = _env_file(state, from_environment)
        # Written before the vault changes, moved into place after: if either fails, the old
        # key still opens the vault and the old .env still holds it.
        from keystead.cli.envfile import stage

        staged = stage(env_file, variable, new_key)
    try:
        count = backend.rotate_master(new_key)
    except BaseException:
        if staged is not None:
            staged.unlink(missing_ok=True)
        raise
    click.echo(f"re-sealed {count} secrets under the new master key", err=True)
    if staged is not None and env_file is not None:
        try:
            os.replace(staged, env_file)
        except OSError as exc:
            click.echo(f"error: the vault is sealed by the new key, but {env_file} could not "
                       f"be replaced ({exc.strerror or exc}): the new key is in {staged}; move "
                       "that file into place before restarting anything", err=True)
            sys.exit(1)
        click.echo(f"wrote the new master key to {env_file}; restart the gateways.", err=True)
    elif not new_key_stdin:
        click.echo(f"KEYSTEAD_MASTER_KEY={new_key}")
        click.echo("Replace the old value with this one (e.g. in .env) and restart keystead.",
                   err=True)


def _env_file(state: State, from_environment: set[str]) -> tuple[Path, str]:
    """The .env to update and the variable in it, or a ConfigError saying why there is none."""
    from keystead.cli.envfile import master_key_variable
    from keystead.config.load import ConfigError

    loaded = state.loaded()
    if loaded.path is None:
        raise ConfigError("--write-env updates the .env beside the config file, and there is "
                          "none: pass --config FILE")
    env_file = (loaded.path.parent / ".env").resolve()
    if not env_file.is_file():
        raise ConfigError(f"--write-env: there is no {env_file} (keystead init writes one)")
    if loaded.config.vault.master_key is None:
        raise ConfigError("--write-env: the master key comes from vault.master_key_file, not "
                          "the .env; write the new key into that file instead (without "
                          "--write-env the key is printed)")
    variable = master_key_variable(loaded.path)
    if variable in from_environment:
        raise ConfigError(f"--write-env: {variable} is set in the environment, which wins over "
                          f"{env_file}; unset it (or rotate without --write-env and change it "
                          "where it is set)")
    return env_file, variable


COMMANDS = [vault]
