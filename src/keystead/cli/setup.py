"""`keystead init`: a starter config, a .env with fresh secrets, and a .gitignore that covers it."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

_IGNORED = (".env", "keystead.db", "keystead.db-*")


def next_steps(directory: Path) -> list[str]:
    """The commands `init` suggests, in order; each works as printed (tests run them)."""
    return [
        f"cd {shlex.quote(str(directory))}",
        "keystead providers add openai --type openai --base-url https://api.openai.com/v1 "
        "--api-key-stdin",
        "keystead providers test openai",
        "keystead teams create myteam",
        "keystead keys create dev-myapp-chat --team myteam --models gpt-4o-mini",
        "keystead serve",
    ]


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--force", is_flag=True, help="Overwrite keystead.yaml (never .env).")
def init(directory: Path, force: bool) -> None:
    """Write keystead.yaml, a .env with a new master key and admin token, and .gitignore."""
    from keystead.config.template import CONFIG_TEMPLATE
    from keystead.private_files import new_admin_token, write_private
    from keystead.vault.envelope import MasterKey

    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "keystead.yaml"
    if config.exists() and not force:
        click.echo(f"keep     {config} (exists; --force overwrites it)")
    else:
        config.write_text(CONFIG_TEMPLATE, encoding="utf-8")
        click.echo(f"wrote    {config}")

    env = directory / ".env"
    secrets = ("# keystead secrets. Never commit this file; .gitignore covers it.\n"
               "# The master key opens the vault: losing it loses every provider key stored "
               "there.\n"
               f"KEYSTEAD_MASTER_KEY={MasterKey.generate_text()}\n"
               f"KEYSTEAD_ADMIN_TOKEN={new_admin_token()}\n"
               "# Provider keys referenced from keystead.yaml, e.g.:\n"
               "# OPENAI_API_KEY=\n")
    try:
        # Mode 0600 from its first byte, and never over an existing file (or a planted link).
        write_private(env, secrets)
    except FileExistsError:
        # Never overwritten: it holds the master key that opens the vault.
        click.echo(f"keep     {env} (exists; it holds the master key, so it is never replaced)")
    else:
        click.echo(f"wrote    {env} (mode 600: master key and admin token)")

    gitignore = directory / ".gitignore"
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    missing = [entry for entry in _IGNORED if entry not in lines]
    if missing:
        with gitignore.open("a", encoding="utf-8") as handle:
            if lines and lines[-1] != "":
                handle.write("\n")
            handle.write("# keystead: secrets and local state\n" + "\n".join(missing) + "\n")
        click.echo(f"updated  {gitignore} (+ {', '.join(missing)})")
    else:
        click.echo(f"keep     {gitignore} (covers .env)")
    click.echo("\nNext: add a provider (its key from stdin), a team and a key, start the gateway:\n"
               + "".join(f"  {step}\n" for step in next_steps(directory)), nl=False)


COMMANDS = [init]
