"""Printing results: aligned tables for people, JSON and CSV for scripts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

__all__ = ["echo_json", "limits_text", "show_record", "table"]

_COUNTS = ("rpm", "rpd", "tpm", "tpd", "max_parallel")


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str = "table",
          empty: str | None = None) -> str:
    """`rows` as an aligned table for people, or JSON or CSV for scripts. With no rows, the
    table is `empty` (a sentence that says so and what to do) when given; JSON stays `[]` and
    CSV its header line."""
    if fmt == "json":
        return json.dumps([{c: r.get(c) for c in columns} for r in rows], indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        # Nested values as JSON (a script can parse them), never as Python's repr.
        writer.writerows({c: _csv_cell(v) for c, v in r.items()} for r in rows)
        return buffer.getvalue().rstrip("\n")
    if not rows and empty is not None:
        return empty
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    """A value as people read it: None `-`, lists comma separated, a mapping `name=value ...`,
    true/false; never Python's repr."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_nested(v)}" for k, v in value.items()) or "-"
    return str(value)


def _nested(value: Any) -> str:
    if isinstance(value, dict):  # one level deeper: compact JSON keeps it on one line
        return json.dumps(value, separators=(",", ":"), default=str)
    return _cell(value)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), default=str)
    return value


def limits_text(limits: Mapping[str, Any] | None) -> str:
    """Limits on one line for people: `rpm=60 tpm=100000 budget=25 USD/month`, `-` if none."""
    if not limits:
        return "-"
    parts = [f"{name}={limits[name]}" for name in _COUNTS if limits.get(name) is not None]
    if limits.get("budget_usd") is not None:
        parts.append(f"budget={limits['budget_usd']} USD/{limits.get('budget_period') or 'month'}")
    return " ".join(parts) or "-"


def show_record(record: Mapping[str, Any], skip: Sequence[str] = ("key",)) -> None:
    """One record as aligned `name  value` lines (lists comma separated, None as `-`)."""
    shown = {name: value for name, value in record.items() if name not in skip}
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        if name == "limits":
            text = limits_text(value)
        elif isinstance(value, list):
            # An empty list (no endpoint allowed) is not None (no restriction, shown as -).
            text = ",".join(str(v) for v in value) or "(none)"
        else:
            text = "-" if value is None else str(value)
        click.echo(f"{name.ljust(width)}  {text}")
