"""`keystead providers add|list|test|remove`."""

from __future__ import annotations

import sys

import click

from keystead.cli.main import State, friendly
from keystead.cli.output import table

_COLUMNS = ("name", "type", "base_url", "source", "api_key", "models", "status", "error")


@click.group("providers")
def providers() -> None:
    """Upstream providers and where their keys live."""


@providers.command("add")
@click.argument("name")
@click.option("--type", "type_", required=True,
              type=click.Choice(["openai", "azure", "openai-compatible", "mock"]))
@click.option("--base-url", help="e.g. https://api.openai.com/v1, http://localhost:8000/v1, "
                                 "https://RESOURCE.openai.azure.com")
@click.option("--api-key-env", metavar="VAR", help="Read the key from this variable at start.")
@click.option("--api-key-stdin", is_flag=True, help="Read the key from stdin into the vault.")
@click.option("--api-key-ref", metavar="REF",
              help="Read the key from a secret store, re-read every secret_stores.refresh_s: "
                   "file:PATH, aws-sm:SECRET_ID[#FIELD], hcvault:MOUNT/PATH#FIELD or env:VAR. "
                   "Only the reference is stored.")
@click.option("--models", help="Models it serves, comma separated; patterns like llama* work.")
@click.option("--deployment", "deployments", multiple=True, metavar="MODEL=DEPLOYMENT",
              help="Azure: the deployment that serves a model (repeatable).")
@click.option("--api-version", help="Azure api-version (default 2024-10-21).")
@click.option("--responses/--no-responses", "supports_responses", default=None,
              help="Whether it serves /v1/responses.")
@click.pass_obj
@friendly
def add(state: State, name: str, type_: str, base_url: str | None, api_key_env: str | None,
        api_key_stdin: bool, api_key_ref: str | None, models: str | None,
        deployments: tuple[str, ...], api_version: str | None,
        supports_responses: bool | None) -> None:
    """Add a provider. Its key goes into the vault (stdin), or stays in the environment or an
    external secret store (--api-key-ref)."""
    api_key = None
    if api_key_stdin:
        if sys.stdin.isatty():
            api_key = click.prompt("Provider API key", hide_input=True)
        else:
            api_key = sys.stdin.readline().strip()
        if not api_key:
            raise click.BadParameter("no key on stdin", param_hint="--api-key-stdin")
    mapping = {}
    for item in deployments:
        model, sep, deployment = item.partition("=")
        if not sep or not model or not deployment:
            raise click.BadParameter(f"{item!r} is not MODEL=DEPLOYMENT", param_hint="--deployment")
        mapping[model] = deployment
    # api_key_ref is sent only when given, so servers without it still accept the rest.
    extra = {"api_key_ref": api_key_ref} if api_key_ref is not None else {}
    view = state.backend().add_provider(
        name=name, type=type_, base_url=base_url, api_key_env=api_key_env, api_key=api_key,
        models=[m.strip() for m in (models or "").split(",") if m.strip()],
        deployments=mapping, api_version=api_version, supports_responses=supports_responses,
        **extra)
    click.echo(f"added provider {view['name']} ({view['type']}), key: {view['api_key'] or 'none'}")
    if view["error"]:
        click.echo(f"warning: {view['error']}", err=True)


@providers.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.pass_obj
@friendly
def list_(state: State, fmt: str) -> None:
    """List providers, from the config file and added at run time."""
    click.echo(table(state.backend().list_providers(), _COLUMNS, fmt))


@providers.command("test")
@click.argument("name")
@click.pass_obj
@friendly
def test(state: State, name: str) -> None:
    """Call the provider with its real key and report what happened."""
    result = state.backend().test_provider(name)
    mark = "ok" if result["ok"] else "FAILED"
    click.echo(f"{mark}: {name} status={result['status']} latency_ms={result['latency_ms']} "
               f"{result['detail']}")
    if not result["ok"]:
        sys.exit(1)


@providers.command("remove")
@click.argument("name")
@click.pass_obj
@friendly
def remove(state: State, name: str) -> None:
    """Remove a provider added at run time, and its key from the vault."""
    state.backend().remove_provider(name)
    click.echo(f"removed provider {name}")


@providers.command("set-key")
@click.argument("name")
@click.pass_obj
@friendly
def set_key(state: State, name: str) -> None:
    """Replace a provider's key in the vault (read from stdin); no request fails.

    Create the new key at the provider first, run this, then revoke the old one there.
    """
    api_key = sys.stdin.readline().strip()
    if not api_key:
        raise click.UsageError("pipe the new key to standard input")
    state.backend().set_provider_key(name, api_key)
    click.echo(f"provider {name}: new key in place; gateways use it within a second")


COMMANDS = [providers]
