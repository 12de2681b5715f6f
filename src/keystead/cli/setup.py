"""`keystead init`: a starter config, a .env with fresh secrets, and a .gitignore that covers it."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from keystead.config.template import CONFIG_TEMPLATE
from keystead.vault.envelope import MasterKey

_IGNORED = (".env", "keystead.db", "keystead.db-*")


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--force", is_flag=True, help="Overwrite keystead.yaml (never .env).")
def init(directory: Path, force: bool) -> None:
    """Write keystead.yaml, a .env with a new master key and admin token, and .gitignore."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "keystead.yaml"
    if config.exists() and not force:
        click.echo(f"keep     {config} (exists; --force overwrites it)")
    else:
        config.write_text(CONFIG_TEMPLATE, encoding="utf-8")
        click.echo(f"wrote    {config}")

    env = directory / ".env"
    if env.exists():
        # Never overwritten: it holds the master key that opens the vault.
        click.echo(f"keep     {env} (exists; it holds the master key, so it is never replaced)")
    else:
        env.write_text(
            "# keystead secrets. Never commit this file; .gitignore covers it.\n"
            "# The master key opens the vault: losing it loses every provider key stored there.\n"
            f"KEYSTEAD_MASTER_KEY={MasterKey.generate_text()}\n"
            f"KEYSTEAD_ADMIN_TOKEN=kst_admin_{secrets.token_urlsafe(32)}\n"
            "# Provider keys referenced from keystead.yaml, e.g.:\n"
            "# OPENAI_API_KEY=\n",
            encoding="utf-8",
        )
        env.chmod(0o600)
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
    click.echo("\nNext: add a provider, create a key, start the gateway:\n"
               f"  cd {directory}\n"
               "  keystead providers add openai --type openai "
               "--base-url https://api.openai.com/v1 --api-key-stdin\n"
               "  keystead keys create dev-myapp-chat --team myteam\n"
               "  keystead serve")


COMMANDS = [init]
