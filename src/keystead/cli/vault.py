"""`keystead vault rotate-master`."""

from __future__ import annotations

import sys

import click

from keystead.cli.context import State, friendly


@click.group("vault")
def vault() -> None:
    """The encrypted store of provider keys."""


@vault.command("rotate-master")
@click.option("--new-key-stdin", is_flag=True,
              help="Read the new master key from stdin instead of generating one.")
@click.pass_obj
@friendly
def rotate_master(state: State, new_key_stdin: bool) -> None:
    """Re-seal every data key under a new master key.

    Runs on the local store with the current master key from the environment. Prints the new
    key once: put it in place of KEYSTEAD_MASTER_KEY, then restart the gateways.
    """
    from keystead.vault.envelope import MasterKey

    new_key = sys.stdin.readline().strip() if new_key_stdin else MasterKey.generate_text()
    MasterKey.from_text(new_key)  # refuse a malformed key before touching anything
    count = state.embedded().rotate_master(new_key)
    click.echo(f"re-sealed {count} secrets under the new master key", err=True)
    if not new_key_stdin:
        click.echo(f"KEYSTEAD_MASTER_KEY={new_key}")
        click.echo("Replace the old value with this one (e.g. in .env) and restart keystead.",
                   err=True)


COMMANDS = [vault]
