"""`keystead events`: the audit trail (who did what to which key) and rotation reminders."""

from __future__ import annotations

import click

from keystead.cli.context import State, friendly
from keystead.cli.output import table


@click.command("events")
@click.option("--key", help="Only this key (id or name).")
@click.option("--kind", help="Only this kind: key.created, key.updated, key.rotated, "
                             "key.revoked, key.disabled, key.enabled, incident, "
                             "key.rotation_due.")
@click.option("--since", help="Window such as 24h or 30d.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.pass_obj
@friendly
def events(state: State, key: str | None, kind: str | None, since: str | None, limit: int,
           fmt: str) -> None:
    """The audit trail, newest first."""
    rows = state.backend().events({"key": key, "kind": kind, "since": since, "limit": limit})
    narrowed = "".join(f", {name} {value}" for name, value in
                       (("key", key), ("kind", kind), ("in the last", since)) if value)
    click.echo(table(rows, ("ts", "kind", "key_id", "actor", "detail"), fmt,
                     empty=f"no events{narrowed}"))


COMMANDS = [events]
