"""`keystead providers add|list|show|test|remove|set-key|enable-key`."""

from __future__ import annotations

import sys
from typing import Any

import click

from keystead.cli.context import State, friendly
from keystead.cli.output import echo_json, show_record, table

_COLUMNS = ("name", "type", "base_url", "source", "api_key", "keys", "models", "status",
            "error")
_KEY_COLUMNS = ("label", "source", "fingerprint", "state", "since", "until", "reason")


@click.group("providers")
def providers() -> None:
    """Upstream providers and where their keys live."""


def _stdin_keys(option: str) -> list[str]:
    """Keys from stdin: one per line (several lines: a pool), or one typed at a prompt."""
    if sys.stdin.isatty():
        keys = [click.prompt("Provider API key", hide_input=True).strip()]
    else:
        keys = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not keys or not keys[0]:
        raise click.BadParameter("no key on stdin", param_hint=option)
    return keys


def _keys_summary(view: dict[str, Any]) -> str:
    keys = view.get("keys") or []
    if not keys:
        return "-"
    if len(keys) == 1:
        return str(keys[0]["state"])
    return ", ".join(f"{k['label']} {k['state']}" for k in keys)


@providers.command("add")
@click.argument("name")
@click.option("--type", "type_", required=True,
              type=click.Choice(["openai", "azure", "openai-compatible", "mock", "anthropic",
                                 "gemini"]))
@click.option("--base-url", help="e.g. https://api.openai.com/v1, http://localhost:8000/v1, "
                                 "https://RESOURCE.openai.azure.com")
@click.option("--api-key-env", "api_key_env", metavar="VAR", multiple=True,
              help="Read the key from this variable at start (repeat it for a pool of keys).")
@click.option("--api-key-stdin", is_flag=True,
              help="Read the key from stdin into the vault (one per line: a pool of keys).")
@click.option("--api-key-ref", "api_key_ref", metavar="REF", multiple=True,
              help="Read the key from a secret store, re-read every secret_stores.refresh_s: "
                   "file:PATH, aws-sm:SECRET_ID[#FIELD], hcvault:MOUNT/PATH#FIELD or env:VAR. "
                   "Only the reference is stored. Repeat it for a pool of keys.")
@click.option("--models", help="Models it serves, comma separated; patterns like llama* work. "
                                "Default: the vendor's models (openai: gpt-*, o1*, o3*, o4*, "
                                "chatgpt-*, text-embedding-*, ft:*; anthropic: claude-*; "
                                "gemini: gemini-*; azure: its --deployment models; mock: "
                                "mock-chat, mock-embedding); openai-compatible has none.")
@click.option("--deployment", "deployments", multiple=True, metavar="MODEL=DEPLOYMENT",
              help="Azure: the deployment that serves a model (repeatable).")
@click.option("--api-version", help="Azure api-version (default 2024-10-21).")
@click.option("--responses/--no-responses", "supports_responses", default=None,
              help="Whether it serves /v1/responses.")
@click.pass_obj
@friendly
def add(state: State, name: str, type_: str, base_url: str | None,
        api_key_env: tuple[str, ...], api_key_stdin: bool, api_key_ref: tuple[str, ...],
        models: str | None, deployments: tuple[str, ...], api_version: str | None,
        supports_responses: bool | None) -> None:
    """Add a provider. Its key goes into the vault (stdin), or stays in the environment or an
    external secret store (--api-key-ref). Several keys make a pool: requests spread over them,
    and one the provider refuses is taken out."""
    keys = _stdin_keys("--api-key-stdin") if api_key_stdin else []
    mapping = {}
    for item in deployments:
        model, sep, deployment = item.partition("=")
        if not sep or not model or not deployment:
            raise click.BadParameter(f"{item!r} is not MODEL=DEPLOYMENT", param_hint="--deployment")
        mapping[model] = deployment
    # One key travels as before (servers without pools accept it); several as a list.
    extra: dict[str, Any] = {}
    if len(keys) > 1:
        extra["api_keys"] = keys
    if len(api_key_env) + len(api_key_ref) > 1:
        extra["api_key_refs"] = [f"env:{var}" for var in api_key_env] + list(api_key_ref)
    elif api_key_ref:
        extra["api_key_ref"] = api_key_ref[0]
    view = state.backend().add_provider(
        name=name, type=type_, base_url=base_url,
        api_key_env=api_key_env[0] if len(api_key_env) == 1 and not api_key_ref else None,
        api_key=keys[0] if len(keys) == 1 else None,
        models=[m.strip() for m in (models or "").split(",") if m.strip()],
        deployments=mapping, api_version=api_version, supports_responses=supports_responses,
        **extra)
    click.echo(f"added provider {view['name']} ({view['type']}), key: {view['api_key'] or 'none'}")
    if view["error"]:
        click.echo(f"warning: {view['error']}", err=True)
    _tell_what_it_serves(state, view, given=bool(models and models.strip(", ")))


def _tell_what_it_serves(state: State, view: dict[str, Any], *, given: bool) -> None:
    """What the new provider answers, and every name it takes from, or leaves to, another."""
    from keystead.providers.claims import claims_from_views, describe, shadows

    name, served = view["name"], view.get("models") or []
    if not served:
        click.echo(f"warning: provider {name} serves no model: it lists none, and type "
                   f"{view['type']} has no default list; add it again with --models, e.g. "
                   "--models 'llama*,qwen*' (or '*' for whatever its server has)", err=True)
        return
    origin = "" if given else (f" (type {view['type']}'s "
                               + ("deployments" if view["type"] == "azure" else "defaults")
                               + "; --models chooses)")
    click.echo(f"serves: {', '.join(served)}{origin}")
    found = shadows(claims_from_views(state.backend().list_providers()))
    for line in describe(s for s in found if name in {c.provider for c in s.losers}):
        click.echo(f"warning: {line}", err=True)
    for line in describe(s for s in found if s.winner.provider == name):
        click.echo(f"note: {line}", err=True)


@providers.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.pass_obj
@friendly
def list_(state: State, fmt: str) -> None:
    """List providers, from the config file and added at run time, and their keys' states."""
    from keystead.providers.claims import claims_from_views, describe, shadows

    rows = state.backend().list_providers()
    shadowed = describe(shadows(claims_from_views(rows)))
    if fmt != "json":
        rows = [{**row, "keys": _keys_summary(row)} for row in rows]
    click.echo(table(rows, _COLUMNS, fmt))
    if shadowed:
        # Below a table; on stderr when the output is for a program (json, csv).
        err = fmt != "table"
        click.echo("\nNames more than one provider claims (who answers them, and why):",
                   err=err)
        for line in shadowed:
            click.echo(f"  {line}", err=err)


@providers.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly
def show(state: State, name: str, as_json: bool) -> None:
    """Show one provider and each of its keys: label, fingerprint, state (active, cooling,
    disabled, unusable), since when and why."""
    view = state.backend().show_provider(name)
    if as_json:
        echo_json(view)
        return
    show_record(view, skip=("keys",))
    click.echo("")
    click.echo(table(view.get("keys") or [], _KEY_COLUMNS))


@providers.command("test")
@click.argument("name")
@click.pass_obj
@friendly
def test(state: State, name: str) -> None:
    """Call the provider with each of its real keys and report what happened."""
    result = state.backend().test_provider(name)
    mark = "ok" if result["ok"] else "FAILED"
    click.echo(f"{mark}: {name} status={result['status']} latency_ms={result['latency_ms']} "
               f"{result['detail']}")
    keys = result.get("keys") or []
    if len(keys) > 1:
        for key in keys:
            click.echo(f"  {key['label']} {key['fingerprint'] or '-'} "
                       f"{'ok' if key['ok'] else 'FAILED'} state={key['state']} "
                       f"status={key['status']} latency_ms={key['latency_ms']} {key['detail']}")
    if not result["ok"]:
        sys.exit(1)


@providers.command("remove")
@click.argument("name")
@click.pass_obj
@friendly
def remove(state: State, name: str) -> None:
    """Remove a provider added at run time, and its keys from the vault."""
    state.backend().remove_provider(name)
    click.echo(f"removed provider {name}")


@providers.command("set-key")
@click.argument("name")
@click.option("--key", "label", metavar="LABEL",
              help="Which key of a pool to replace: 2 (or '#2'). Needed with several keys.")
@click.option("--add", "add_", is_flag=True,
              help="Add a key to the pool (from stdin, or --ref) instead of replacing one.")
@click.option("--ref", metavar="REF",
              help="With --add: the new key is kept in an external store (file:, aws-sm:, "
                   "hcvault:, env:); only the reference is stored.")
@click.option("--remove", "remove_", metavar="LABEL",
              help="Remove key LABEL (2 or '#2') from the pool; the keys after it move up.")
@click.pass_obj
@friendly
def set_key(state: State, name: str, label: str | None, add_: bool, ref: str | None,
            remove_: str | None) -> None:
    """Replace a provider's key in the vault (read from stdin); no request fails.

    Create the new key at the provider first, run this, then revoke the old one there. With
    --add or --remove, change the pool of keys of a provider added at run time.
    """
    if sum((label is not None, add_, remove_ is not None)) > 1:
        raise click.UsageError("use one of --key, --add and --remove")
    if ref is not None and not add_:
        raise click.UsageError("--ref only goes with --add")
    backend = state.backend()
    if remove_ is not None:
        view = backend.remove_provider_key(name, remove_)
        click.echo(f"provider {name}: key {_label(remove_)} removed; keys now: "
                   f"{_keys_summary(view)}")
        return
    api_key = None
    if ref is None:
        api_key = sys.stdin.readline().strip()
        if not api_key:
            raise click.UsageError("pipe the new key to standard input")
    if add_:
        view = backend.add_provider_key(name, api_key, ref)
        added = (view.get("keys") or [{}])[-1]
        click.echo(f"provider {name}: key {added.get('label', '?')} added "
                   f"(fingerprint {added.get('fingerprint') or '-'}); gateways use it within a "
                   "second")
        return
    assert api_key is not None
    backend.set_provider_key(name, api_key, label)
    which = f" {_label(label)}" if label is not None else ""
    click.echo(f"provider {name}: new key{which} in place; gateways use it within a second")


@providers.command("enable-key")
@click.argument("name")
@click.argument("label")
@click.pass_obj
@friendly
def enable_key(state: State, name: str, label: str) -> None:
    """Put key LABEL (2 or '#2') of a provider, taken out after the provider refused it (401,
    403), back into rotation on every gateway. If the provider still refuses it, it is taken
    out again at once, and the request that found out goes to another key."""
    view = state.backend().enable_provider_key(name, label)
    click.echo(f"provider {name}: key {_label(label)} back in rotation; keys now: "
               f"{_keys_summary(view)}")


def _label(label: str) -> str:
    return "#" + label.strip().lstrip("#")


COMMANDS = [providers]
