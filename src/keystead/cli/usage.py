"""`keystead usage`: what the AI features cost, grouped the way finance asks."""

from __future__ import annotations

import click

from keystead.cli.main import State, friendly
from keystead.cli.output import table
from keystead.durations import parse_duration
from keystead.state.store import GROUPS

_COLUMNS = ("group", "requests", "errors", "prompt_tokens", "completion_tokens",
            "cached_tokens", "cost_usd", "avg_latency_ms")


@click.command("usage")
@click.option("--by", type=click.Choice(GROUPS), default="key", show_default=True)
@click.option("--since", default="7d", show_default=True, help="Window, e.g. 24h, 7d, 30d.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.pass_obj
@friendly
def usage(state: State, by: str, since: str, fmt: str) -> None:
    """Requests, tokens and cost from the usage ledger."""
    try:
        parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    rows = state.backend().usage(by, since)
    columns = (by, *_COLUMNS[1:])
    shaped = [{by: r["group"], **r} for r in rows]
    click.echo(table(shaped, columns, fmt))


COMMANDS = [usage]
