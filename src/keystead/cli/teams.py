"""`keystead teams create|list|show|update`, and the limit options keys and teams share.

In `update` commands the value `off` clears a limit or an allowlist (`--rpm off`,
`--ip-allow off`); an option that is not given leaves its value as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import click

from keystead.cli.context import State, friendly
from keystead.cli.output import echo_json, limits_text, show_record, table

__all__ = ["OFF", "OffOr", "limit_options", "limits_from_options"]

F = TypeVar("F", bound=Callable[..., Any])

_LIST_COLUMNS = ("name", "owner", "limits", "ip_allowlist", "description", "created_at")
_COUNT_OPTIONS = (("rpm", "Requests per minute."), ("rpd", "Requests per day."),
                  ("tpm", "Tokens per minute (prompt + completion)."),
                  ("tpd", "Tokens per day."), ("max_parallel", "Requests in flight at once."))
_LIMIT_OPTION_NAMES = ("rpm", "rpd", "tpm", "tpd", "max_parallel", "budget", "budget_period",
                       "ip_allow")


class _Off:
    """The value of an option given as `off`: clear what it sets."""

    def __repr__(self) -> str:
        return "OFF"


OFF = _Off()


class OffOr(click.ParamType[Any]):
    """`inner`'s values, or `off` (case-insensitive) to clear the setting."""

    def __init__(self, inner: click.ParamType[Any]):
        self.inner = inner
        self.name = f"{inner.name}|off"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if value is OFF or (isinstance(value, str) and value.strip().lower() == "off"):
            return OFF
        return self.inner.convert(value, param, ctx)


class _Usd(click.ParamType[str]):
    """An amount in USD, kept as text so no float ever rounds it."""

    name = "usd"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value).strip().removeprefix("$")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or amount < 0:
            self.fail(f"{value!r} is not an amount in USD of 0 or more (e.g. 25 or 12.50)",
                      param, ctx)
        return format(amount, "f")


def limit_options(*, update: bool) -> Callable[[F], F]:
    """The limit, budget and IP allowlist options; in updates each also accepts `off`."""

    def wrap(kind: click.ParamType[Any]) -> click.ParamType[Any]:
        return OffOr(kind) if update else kind

    off = " `off` clears it." if update else ""
    options = [click.option(f"--{name.replace('_', '-')}", name,
                            type=wrap(click.IntRange(min=1)), metavar="N|off" if update else "N",
                            help=text + off)
               for name, text in _COUNT_OPTIONS]
    options += [
        click.option("--budget", "budget", type=wrap(_Usd()),
                     metavar="USD|off" if update else "USD",
                     help="Spend cap per budget period, in USD." + off),
        click.option("--budget-period", "budget_period", type=click.Choice(["day", "month"]),
                     help="When the budget resets (default: month)."),
        click.option("--ip-allow", "ip_allow", metavar="CIDR,CIDR" + ("|off" if update else ""),
                     help="Only these IPv4/IPv6 addresses or CIDRs may use it." + off),
    ]

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def limits_from_options(options: dict[str, Any], *, update: bool
                        ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Pop the limit options out of `options`.

    Returns the limits (limit -> value, None to clear in an update; None if no limit option was
    given) and the other changes they make (`ip_allowlist`, present only if given).
    """
    values = {name: options.pop(name, None) for name in _LIMIT_OPTION_NAMES}
    ip_allow = values.pop("ip_allow")
    if not update and values["budget_period"] is not None and values["budget"] is None:
        raise click.BadParameter("a budget period needs a budget (--budget USD)",
                                 param_hint="--budget-period")
    limits = {("budget_usd" if name == "budget" else name): (None if value is OFF else value)
              for name, value in values.items() if value is not None}
    extra: dict[str, Any] = {}
    if ip_allow is not None:
        if ip_allow.strip().lower() == "off" and update:
            extra["ip_allowlist"] = None
        else:
            extra["ip_allowlist"] = [c.strip() for c in ip_allow.split(",") if c.strip()]
    return (limits or None), extra


@click.group("teams")
def teams() -> None:
    """Teams: the keys they own share the team's limits, budget and IP allowlist."""


def _print(record: dict[str, Any], as_json: bool) -> None:
    echo_json(record) if as_json else show_record(record)


@teams.command("create")
@click.argument("name")
@click.option("--description", help="What the team does.")
@click.option("--owner", help="Contact (email, Slack handle).")
@limit_options(update=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly
def create(state: State, /, name: str, description: str | None, owner: str | None, as_json: bool,
           **options: Any) -> None:
    """Create a team. Names are lowercase letters, digits and '-'."""
    limits, extra = limits_from_options(options, update=False)
    record = state.backend().create_team(name=name, description=description, owner=owner,
                                         limits=limits, ip_allowlist=extra.get("ip_allowlist"))
    _print(record, as_json)


@teams.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.pass_obj
@friendly
def list_(state: State, fmt: str) -> None:
    """List teams with their limits."""
    rows = state.backend().list_teams()
    if fmt != "json":  # one cell per team for people and spreadsheets; JSON keeps the structure
        rows = [{**row, "limits": limits_text(row["limits"])} for row in rows]
    click.echo(table(rows, _LIST_COLUMNS, fmt,
                     empty="no teams yet; create one with `keystead teams create NAME`"))


@teams.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly
def show(state: State, name: str, as_json: bool) -> None:
    """Show one team."""
    _print(state.backend().show_team(name), as_json)


@teams.command("update")
@click.argument("name")
@click.option("--description", help="What the team does; \"\" clears it.")
@click.option("--owner", help="Contact (email, Slack handle); \"\" clears it.")
@limit_options(update=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly
def update(state: State, /, name: str, description: str | None, owner: str | None, as_json: bool,
           **options: Any) -> None:
    """Change a team's description, owner, limits or IP allowlist; `off` clears a limit."""
    limits, changes = limits_from_options(options, update=True)
    if limits is not None:
        changes["limits"] = limits
    for field, value in (("description", description), ("owner", owner)):
        if value is not None:
            changes[field] = value or None
    if not changes:
        raise click.UsageError("nothing to change: give at least one option "
                               "(see keystead teams update --help)")
    _print(state.backend().update_team(name, changes), as_json)


COMMANDS = [teams]
