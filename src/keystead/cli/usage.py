"""`keystead usage`: what the AI features cost, grouped the way finance asks."""

from __future__ import annotations

from typing import Any

import click

from keystead.cli.context import State, friendly
from keystead.cli.output import table
from keystead.durations import parse_duration
from keystead.state.store import DIMENSIONS, GROUPS

_COLUMNS = ("group", "requests", "errors", "prompt_tokens", "completion_tokens",
            "cached_tokens", "cost_usd", "avg_latency_ms")
_ROUTE_COLUMNS = ("retries", "fallbacks", "cache_hits", "saved_usd", "schema_checked",
                  "schema_invalid", "degraded")
_FILTER_HELP = {"key": "Only this key (its id or name).", "team": "Only this team.",
                "env": "Only this environment.", "feature": "Only this feature tag.",
                "route": "Only this route.", "model": "Only this model.",
                "provider": "Only this provider.", "endpoint": "Only this endpoint."}


def _filter_options(func: Any) -> Any:
    # One option per dimension the store can filter by, so a new dimension needs no CLI change.
    for dimension in reversed(DIMENSIONS):
        func = click.option(f"--{dimension}", dimension, metavar="VALUE",
                            help=_FILTER_HELP.get(dimension, f"Only this {dimension}."))(func)
    return func


@click.command("usage")
@click.option("--by", type=click.Choice(GROUPS), default="key", show_default=True)
@click.option("--since", default="7d", show_default=True, help="Window, e.g. 24h, 7d, 30d.")
@_filter_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.pass_obj
@friendly
def usage(state: State, /, by: str, since: str, fmt: str, **filters: str | None) -> None:
    """Requests, tokens and cost from the usage ledger, grouped one way and filtered by the
    others.

    For example: --by model --team payments --env prod.
    """
    try:
        parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    chosen = {name: value for name, value in filters.items() if value is not None}
    rows = state.backend().usage(by, since, chosen)
    columns: tuple[str, ...] = (by, *_COLUMNS[1:])
    if by == "route":  # how the reliability moves did, per route
        columns += _ROUTE_COLUMNS
    shaped = [{by: r["group"], **r} for r in rows]
    narrowed = "".join(f", {name} {value}" for name, value in chosen.items())
    click.echo(table(shaped, columns, fmt,
                     empty=f"no requests in the last {since}{narrowed}"))


COMMANDS = [usage]
