"""`keystead check`: the smallest request through every provider key and every route, and what
came back: status, served model, latency and the provider's rate-limit headers. Exits 1 when a
check failed, so it can gate a deploy or run from cron."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import click

from keystead.cli.context import State, friendly
from keystead.cli.output import echo_json, table

_COLUMNS = ("result", "target", "status", "model", "latency_ms", "rate_limits", "detail")


@click.command("check")
@click.option("--provider", "providers", multiple=True, metavar="NAME",
              help="Check this provider's keys (repeatable); with --route only, none.")
@click.option("--route", "routes", multiple=True, metavar="NAME",
              help="Check this route (repeatable); with --provider only, none.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_obj
@friendly
def check(state: State, providers: tuple[str, ...], routes: tuple[str, ...],
          as_json: bool) -> None:
    """Send the smallest request through each provider key and route; exit 1 if one fails."""
    found = state.backend().check(list(providers), list(routes))
    results: list[dict[str, Any]] = found["results"]
    if as_json:
        echo_json(found)
    elif not results:
        click.echo("Nothing to check: no provider or route is configured.")
    else:
        rows = [{**r, "result": "ok" if r["ok"] else "FAILED",
                 "model": r["model"] or "-", "status": r["status"] or r["error"],
                 "rate_limits": rate_limit_summary(r["rate_limits"]),
                 "detail": r["deployment"] or "" if r["ok"] else r["detail"]}
                for r in results]
        click.echo(table(rows, _COLUMNS))
    if not found["ok"]:
        sys.exit(1)


def rate_limit_summary(headers: Mapping[str, str]) -> str:
    """OpenAI's and Anthropic's rate-limit headers in a few words: what is left of each limit,
    when it resets, and any retry-after."""
    parts = []
    for kind in ("requests", "tokens"):
        left = headers.get(f"x-ratelimit-remaining-{kind}") \
            or headers.get(f"anthropic-ratelimit-{kind}-remaining")
        limit = headers.get(f"x-ratelimit-limit-{kind}") \
            or headers.get(f"anthropic-ratelimit-{kind}-limit")
        reset = headers.get(f"x-ratelimit-reset-{kind}") \
            or headers.get(f"anthropic-ratelimit-{kind}-reset")
        if left is None and limit is None:
            continue
        text = f"{kind} {left or '?'}/{limit or '?'}"
        parts.append(f"{text} reset {reset}" if reset else text)
    for name in ("retry-after", "retry-after-ms"):
        if name in headers:
            parts.append(f"{name} {headers[name]}")
    return ", ".join(parts) or "-"


COMMANDS = [check]
