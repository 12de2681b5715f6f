"""`keystead tokens mint`: a short-lived token from a key, for a browser or a job."""

from __future__ import annotations

from typing import Any

import click

from keystead.cli.context import State, friendly
from keystead.cli.output import echo_json


@click.group("tokens")
def tokens() -> None:
    """Short-lived tokens: minted from a key, narrower than it, gone in minutes."""


@tokens.command("mint")
@click.argument("key")
@click.option("--ttl", help="Lifetime, e.g. 15m (default tokens.default_ttl).")
@click.option("--models", help="Allowed models, comma separated (default: the key's).")
@click.option("--rpm", type=click.IntRange(min=1), help="Its own requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1), help="Its own tokens per minute.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Cap on max_tokens.")
@click.option("--user", help="The end user it is for (in the log line).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@friendly
def mint(state: State, key: str, ttl: str | None, models: str | None, rpm: int | None,
         tpm: int | None, max_tokens: int | None, user: str | None, as_json: bool) -> None:
    """Mint a token from KEY (id or name). It dies with the key's revocation or rotation."""
    options: dict[str, Any] = {"ttl": ttl, "rpm": rpm, "tpm": tpm, "max_tokens": max_tokens,
                               "user": user,
                               "models": [m.strip() for m in models.split(",") if m.strip()]
                               if models else None}
    minted = state.backend().mint_token(key, {k: v for k, v in options.items()
                                              if v is not None})
    if as_json:
        echo_json(minted)
    else:
        click.echo(minted["token"])
        click.echo(f"expires in {minted['expires_in']} s", err=True)


COMMANDS = [tokens]
