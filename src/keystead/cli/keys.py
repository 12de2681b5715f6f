"""`keystead keys create|list|show|revoke`."""

from __future__ import annotations

from typing import Any

import click

from keystead.cli.main import State, friendly
from keystead.cli.output import echo_json, table
from keystead.durations import parse_duration

_LIST_COLUMNS = ("id", "name", "status", "env", "team", "models", "max_tokens", "expires_at",
                 "last_used_at")


@click.group("keys")
def keys() -> None:
    """Virtual keys: one per service and environment."""


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _show(record: dict[str, Any]) -> None:
    width = max(len(k) for k in record)
    for name, value in record.items():
        if name == "key":
            continue
        shown = ",".join(value) if isinstance(value, list) else ("-" if value is None else value)
        click.echo(f"{name.ljust(width)}  {shown}")


@keys.command("create")
@click.argument("name")
@click.option("--team", help="Team that owns the key.")
@click.option("--env", help="Environment (default: the one the name starts with).")
@click.option("--owner", help="Owner contact (email, Slack handle).")
@click.option("--description", help="What the key is for.")
@click.option("--models", help="Allowed models, comma separated; patterns like gpt-4o* work.")
@click.option("--endpoints",
              help="Allowed endpoints: chat.completions,embeddings,responses,models.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Cap on max_tokens per request.")
@click.option("--max-body-bytes", type=click.IntRange(min=1024), help="Cap on request size.")
@click.option("--expires", help="Lifetime, e.g. 30d or 12h.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (includes the key).")
@click.pass_obj
@friendly
def create(state: State, name: str, team: str | None, env: str | None, owner: str | None,
           description: str | None, models: str | None, endpoints: str | None,
           max_tokens: int | None, max_body_bytes: int | None, expires: str | None,
           as_json: bool) -> None:
    """Create a key. Its text is shown once: keystead keeps only a hash."""
    try:
        expires_in = parse_duration(expires) if expires else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    created = state.backend().create_key(
        name=name, env=env, team=team, owner=owner, description=description,
        models=_csv(models), endpoints=_csv(endpoints), max_tokens=max_tokens,
        max_body_bytes=max_body_bytes, expires_in_s=expires_in)
    if as_json:
        echo_json(created)
        return
    _show(created)
    click.echo("")
    click.echo(f"key  {created['key']}")
    click.echo("")
    click.echo("This is the only time the key is shown. Store it in your secret manager.", err=True)


@keys.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.pass_obj
@friendly
def list_(state: State, fmt: str) -> None:
    """List keys (never their text)."""
    click.echo(table(state.backend().list_keys(), _LIST_COLUMNS, fmt))


@keys.command("show")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@friendly
def show(state: State, key: str, as_json: bool) -> None:
    """Show one key by id or name."""
    record = state.backend().show_key(key)
    echo_json(record) if as_json else _show(record)


@keys.command("revoke")
@click.argument("key")
@click.option("--reason", help="Recorded with the revocation.")
@click.pass_obj
@friendly
def revoke(state: State, key: str, reason: str | None) -> None:
    """Revoke a key by id or name. Takes effect at once on running gateways."""
    record = state.backend().revoke_key(key, reason)
    click.echo(f"revoked {record['id']} ({record['name']}) at {record['revoked_at']}")


@keys.command("disable")
@click.argument("key")
@click.pass_obj
@friendly
def disable(state: State, key: str) -> None:
    """Pause a key (refused with key_disabled) until it is enabled again."""
    record = state.backend().set_disabled(key, True)
    click.echo(f"disabled {record['id']} ({record['name']}) at {record['disabled_at']}")


@keys.command("enable")
@click.argument("key")
@click.pass_obj
@friendly
def enable(state: State, key: str) -> None:
    """Let a disabled key work again."""
    record = state.backend().set_disabled(key, False)
    click.echo(f"enabled {record['id']} ({record['name']})")


COMMANDS = [keys]
