"""`keystead incident KEY_OR_TEXT`: the leaked-key response in one command."""

from __future__ import annotations

import sys
from typing import Any

import click

from keystead.cli.context import State, friendly
from keystead.cli.output import echo_json


@click.command("incident")
@click.argument("key")
@click.option("--reason", help="Why (recorded with the key, sent to the owner's webhook).")
@click.option("--revoke", "revoke_only", is_flag=True,
              help="Revoke without a replacement (the key should not work any more at all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (includes the new key).")
@click.pass_obj
@friendly
def incident(state: State, key: str, reason: str | None, revoke_only: bool,
             as_json: bool) -> None:
    """Stop a leaked key everywhere, issue its replacement and show what it did.

    KEY is its id, its name, or the leaked text itself; `-` reads the text from stdin (so it
    stays out of your shell history).
    """
    if key == "-":
        key = sys.stdin.readline().strip()
    report = state.backend().incident(key, reason, not revoke_only)
    if as_json:
        echo_json(report)
        return
    _show(report)


def _show(report: dict[str, Any]) -> None:
    key = report["key"]
    click.echo(f"{report['action']} {key['id']} ({key['name']}) in {report['stop_ms']} ms; "
               "every gateway refuses the old text within a second (at once with Redis).")
    if report["new_key"]:
        click.echo("\nReplacement (same scopes, limits and budget), shown once:\n")
        click.echo(f"  {report['new_key']}\n")
    notified = report["owner_notified"]
    click.echo("owner notified: " + {None: "no webhook configured (incidents.webhook_url)",
                                     True: "yes", False: "NO: the webhook failed (see the log)"}
               [notified])
    seen = report["forensics"]
    click.echo(f"\nLast {seen['window_days']} days: {seen['requests']} requests"
               + (f", ${seen['cost_usd']}, first seen {seen['first_seen']}, last seen "
                  f"{seen['last_seen']}" if seen["requests"] else ""))
    for title, rows in (("source IPs", seen["by_ip"]), ("user agents", seen["by_user_agent"]),
                        ("models", seen["by_model"])):
        if rows:
            click.echo(f"  {title}: " + ", ".join(f"{r['value']} ({r['requests']})"
                                                  for r in rows[:5]))
    for line in seen["unusual"]:
        click.echo(f"  UNUSUAL: {line}")


COMMANDS = [incident]
