"""`keystead alerts`: the rules and their state, test messages to the channels, silences."""

from __future__ import annotations

import click

from keystead.cli.context import State, friendly
from keystead.cli.output import table


@click.group("alerts")
def alerts() -> None:
    """Alert rules and their state; test the channels, silence an alert."""


@alerts.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.pass_obj
@friendly
def list_alerts(state: State, fmt: str) -> None:
    """Every rule: its alerts (firing, silenced, resolved in the last 7 days), since when and
    when the last message went out; `ok` (or `off`) for a rule with none."""
    rows = state.backend().alerts()
    click.echo(table(rows, ("rule", "state", "subject", "since", "last_sent", "silenced_until",
                            "title"), fmt, empty="no rules"))


@alerts.command("test")
@click.option("--channel", help="Only this channel (default: every one).")
@click.pass_obj
@friendly
def test_channels(state: State, channel: str | None) -> None:
    """Send a test message to each channel and say which worked (and why not)."""
    results = state.backend().test_alerts(channel)
    for result in results:
        mark = "ok" if result["ok"] else "FAILED"
        click.echo(f"{result['channel']}: {mark}" + ("" if result["ok"]
                                                     else f" ({result['result']})"))
    if not all(r["ok"] for r in results):
        raise SystemExit(1)


@alerts.command("silence")
@click.argument("target")
@click.option("--for", "duration", required=True, help="How long, e.g. 2h or 1d (at most 90d).")
@click.option("--reason", help="Why (shown by `alerts list` to the next person).")
@click.pass_obj
@friendly
def silence(state: State, target: str, duration: str, reason: str | None) -> None:
    """No messages for TARGET: a rule (`budget`) or one alert (`rule:subject`, as `alerts list`
    shows it). It still fires and resolves underneath."""
    result = state.backend().silence_alert(target, duration, reason)
    click.echo(f"silenced {result['target']} until {result['until']}")


@alerts.command("unsilence")
@click.argument("target")
@click.pass_obj
@friendly
def unsilence(state: State, target: str) -> None:
    """End the silence on TARGET."""
    state.backend().unsilence_alert(target)
    click.echo(f"{target} is no longer silenced")


COMMANDS = [alerts]
