"""`keystead keys create|list|show|update|rotate|disable|enable|revoke`."""

from __future__ import annotations

from typing import Any

import click

from keystead.cli.context import State, friendly
from keystead.cli.output import echo_json, show_record, table
from keystead.cli.teams import OFF, OffOr, limit_options, limits_from_options
from keystead.durations import parse_duration

_LIST_COLUMNS = ("id", "name", "status", "env", "team", "models", "max_tokens", "cache",
                 "expires_at", "last_used_at")
# `--cache` as people write it, and the stored value: None follows the route.
_CACHE = {"on": True, "off": False, "default": None}
_CACHE_HELP = ("The response cache for this key: `off` never reads or writes it (prompts with "
               "personal data), `on` also uses routes whose cache is opt_in")


@click.group("keys")
def keys() -> None:
    """Virtual keys: one per service and environment."""


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _models(value: str, *, update: bool) -> list[str]:
    """A `--models` list. Empty is refused: it would read as no scope, i.e. every model."""
    models = _csv(value) or []
    if not models:
        every = "write `--models off`" if update else "leave --models out"
        raise click.BadParameter(f"names no model; to allow every model, {every}",
                                 param_hint="--models")
    return models


def _warn_unserved(state: State, models: list[str] | None) -> None:
    """Say so when a key is scoped to a model no provider or route serves (a typo, or a
    provider not added yet): its requests would be refused with model_not_found."""
    if not models:
        return
    from keystead.cli.backend import BackendError

    try:
        missing = state.backend().unserved_models(models)
    except BackendError:  # an older gateway, or gone meanwhile: the key is made, say nothing
        return
    for model in missing:
        click.echo(f"warning: no provider or route serves {model!r}: requests for it get "
                   "model_not_found until one does (keystead providers list shows what is "
                   "served)", err=True)


def _people(record: dict[str, Any]) -> dict[str, Any]:
    """A key for people: its cache setting in the words of `--cache`."""
    if "cache" not in record:
        return record
    word = next(w for w, v in _CACHE.items() if v is record["cache"])
    return {**record, "cache": word}


def _expires(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None


@keys.command("create")
@click.argument("name")
@click.option("--team", help="Team that owns the key.")
@click.option("--env", help="Environment (default: the one the name starts with).")
@click.option("--owner", help="Owner contact (email, Slack handle).")
@click.option("--description", help="What the key is for.")
@click.option("--models", help="Allowed models, comma separated; patterns like gpt-4o* work.")
@click.option("--endpoints",
              help="Allowed endpoints: chat.completions,embeddings,responses,models,"
                   "messages (Anthropic's /v1/messages; count_tokens with it).")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Cap on max_tokens per request.")
@click.option("--max-body-bytes", type=click.IntRange(min=1024), help="Cap on request size.")
@click.option("--expires", help="Lifetime, e.g. 30d or 12h.")
@click.option("--cache", type=click.Choice(["on", "off"], case_sensitive=False),
              help=_CACHE_HELP + "; not given: each route decides.")
@limit_options(update=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (includes the key).")
@click.pass_obj
@friendly
def create(state: State, /, name: str, team: str | None, env: str | None, owner: str | None,
           description: str | None, models: str | None, endpoints: str | None,
           max_tokens: int | None, max_body_bytes: int | None, expires: str | None,
           cache: str | None, as_json: bool, **options: Any) -> None:
    """Create a key. Its text is shown once: keystead keeps only a hash.

    A --team must exist (keystead teams create NAME); its limits apply on top of the key's.
    """
    expires_in = _expires(expires) if expires else None
    scope = _models(models, update=False) if models is not None else None
    limits, extra = limits_from_options(options, update=False)
    created = state.backend().create_key(
        name=name, env=env, team=team, owner=owner, description=description,
        models=scope, endpoints=_csv(endpoints), max_tokens=max_tokens,
        max_body_bytes=max_body_bytes, expires_in_s=expires_in, limits=limits,
        ip_allowlist=extra.get("ip_allowlist"),
        cache=_CACHE[cache.lower()] if cache is not None else None)
    _warn_unserved(state, scope)
    if as_json:
        echo_json(created)
        return
    show_record(_people(created))
    click.echo("")
    click.echo(f"key  {created['key']}")
    click.echo("")
    click.echo("This is the only time the key is shown. Store it in your secret manager.", err=True)


@keys.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--due", "due", is_flag=False, flag_value="0s", default=None, metavar="[WITHIN]",
              help="Only keys whose rotation (keys.rotate_every) is due, or due within WITHIN "
                   "(e.g. --due 7d); most overdue first.")
@click.pass_obj
@friendly
def list_(state: State, fmt: str, due: str | None) -> None:
    """List keys (never their text)."""
    if due is not None:
        records = state.backend().due_keys(due)
        within = "" if due == "0s" else f" within {due}"
        click.echo(table(records, (*_LIST_COLUMNS[:4], "rotated_at", "rotation_due_at"), fmt,
                         empty=f"no key's rotation is due{within} (keys.rotate_every)"))
        return
    records = state.backend().list_keys()
    click.echo(table([_people(r) for r in records] if fmt == "table" else records,
                     _LIST_COLUMNS, fmt,
                     empty="no keys yet; create one with `keystead keys create NAME`"))


@keys.command("show")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@friendly
def show(state: State, key: str, as_json: bool) -> None:
    """Show one key by id or name."""
    record = state.backend().show_key(key)
    echo_json(record) if as_json else show_record(_people(record))


@keys.command("update")
@click.argument("key")
@click.option("--team", help="Move the key to this team (it must exist).")
@click.option("--owner", help="Owner contact; \"\" clears it.")
@click.option("--description", help="What the key is for; \"\" clears it.")
@click.option("--models", type=OffOr(click.STRING), metavar="a,b|off",
              help="Allowed models, comma separated; `off` allows every model.")
@click.option("--endpoints", type=OffOr(click.STRING), metavar="a,b|off",
              help="Allowed endpoints; `off` allows every endpoint.")
@click.option("--max-tokens", type=OffOr(click.IntRange(min=1)), metavar="N|off",
              help="Cap on max_tokens per request; `off` removes it.")
@click.option("--max-body-bytes", type=OffOr(click.IntRange(min=1024)), metavar="N|off",
              help="Cap on request size; `off` removes it.")
@click.option("--expires", type=OffOr(click.STRING), metavar="DURATION|off",
              help="New lifetime from now, e.g. 30d; `off`: never expires.")
@click.option("--cache", type=click.Choice(["on", "off", "default"], case_sensitive=False),
              help=_CACHE_HELP + "; `default`: each route decides again.")
@limit_options(update=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly
def update(state: State, /, key: str, team: str | None, owner: str | None,
           description: str | None, models: Any, endpoints: Any, max_tokens: Any,
           max_body_bytes: Any, expires: Any, cache: str | None, as_json: bool,
           **options: Any) -> None:
    """Change a key's team, scope, limits, IP allowlist or cache setting; options not given stay
    as they are.

    `off` clears a setting (`--rpm off`, `--ip-allow off`). Takes effect at once on running
    gateways. The key text does not change.
    """
    limits, changes = limits_from_options(options, update=True)
    if limits is not None:
        changes["limits"] = limits
    if team is not None:
        changes["team"] = team
    for field, text in (("owner", owner), ("description", description)):
        if text is not None:
            changes[field] = text or None
    if models is not None:
        changes["models"] = None if models is OFF else _models(models, update=True)
    if endpoints is not None:
        changes["endpoints"] = None if endpoints is OFF else _csv(endpoints)
    for field, number in (("max_tokens", max_tokens), ("max_body_bytes", max_body_bytes)):
        if number is not None:
            changes[field] = None if number is OFF else number
    if expires is not None:
        changes["expires_in_s"] = None if expires is OFF else _expires(expires)
    if cache is not None:
        changes["cache"] = _CACHE[cache.lower()]
    if not changes:
        raise click.UsageError("nothing to change: give at least one option "
                               "(see keystead keys update --help)")
    record = state.backend().update_key(key, changes)
    _warn_unserved(state, changes.get("models"))
    echo_json(record) if as_json else show_record(_people(record))


@keys.command("rotate")
@click.argument("key")
@click.option("--grace", default="24h", show_default=True,
              help="How long the old key text keeps working, so services can switch over; "
                   "0s refuses it at once (use `keystead keys revoke` for a leak).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (includes the new key).")
@click.pass_obj
@friendly
def rotate(state: State, key: str, grace: str, as_json: bool) -> None:
    """Issue a new text for a key: same name, scopes, limits, budget and usage history."""
    record = state.backend().rotate_key(key, grace)
    if as_json:
        echo_json(record)
        return
    click.echo(f"rotated {record['id']} ({record['name']}); the new key, shown once:")
    click.echo()
    click.echo(f"  {record['key']}")
    click.echo()
    if record["previous_key_expires_at"]:
        click.echo(f"The old key works until {record['previous_key_expires_at']}.")
    else:
        click.echo("The old key is refused from now on.")


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
