"""`keystead routes`: every route, its deployments and how they are doing (breaker state,
requests in flight, latency), its fallbacks, cache and structured-output policy."""

from __future__ import annotations

from typing import Any

import click
import orjson

from keystead.cli.context import State, friendly
from keystead.cli.output import table


@click.command("routes")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
@friendly
def routes(state: State, fmt: str) -> None:
    """Routes (aliases) and the health of their deployments."""
    found = state.backend().routes()
    if fmt == "json":
        click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return
    if not found:
        click.echo("No routes: add them under `routes:` in the config (docs/routing.md).")
        return
    rows: list[dict[str, Any]] = []
    for route in found:
        for d in route["deployments"]:
            rows.append({
                "route": route["route"], "deployment": d["deployment"], "weight": d["weight"],
                "breaker": d["breaker"] + (f" ({d['open_for_s']}s)" if d["open_for_s"] else ""),
                "in_flight": d["in_flight"], "latency_ms": d["latency_ms"] or "",
                "fallbacks": ", ".join(route["fallbacks"]),
            })
        if route["problem"]:
            rows.append({"route": route["route"], "deployment": "! " + route["problem"]})
    click.echo(table(rows, ("route", "deployment", "weight", "breaker", "in_flight",
                            "latency_ms", "fallbacks"), fmt))


COMMANDS = [routes]
