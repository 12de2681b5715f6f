"""Teams (P9, P10, P4): who owns keys, and the limits, budget and IP allowlist they share.

Also the checks that keys and teams share: limit values and CIDR allowlists. Values are checked
here, not only in the CLI or the API models, so every caller (embedded CLI, admin API, tests) gets
the same refusal with the same words.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from keystead.control.bounds import BUDGET_MAX, BUDGET_PLACES, COUNT_MAX
from keystead.control.typed_text import redact
from keystead.errors import InvalidField, NotFound
from keystead.state.records import KeyRecord, Limits, TeamRecord
from keystead.state.store import DuplicateName
from keystead.state.versions import KEYS_VERSION

if TYPE_CHECKING:
    from keystead.control.plane import ControlPlane

__all__ = ["LIMIT_FIELDS", "TeamService", "apply_limit_changes", "check_allowlist",
           "check_limits", "team_view"]

_TEAM_NAME = re.compile(r"[a-z0-9-]{1,64}")
_COUNTS = ("rpm", "rpd", "tpm", "tpd", "max_parallel")  # whole numbers, at least 1
_PERIODS = ("day", "month")
LIMIT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Limits))
_TEAM_CHANGES = frozenset({"description", "owner", "limits", "ip_allowlist"})


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    # bool is an int to Python, never to an operator writing a limit.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= COUNT_MAX:
        raise InvalidField(f"{name} must be a whole number from 1 to {COUNT_MAX}, not "
                           f"{value!r}.",
                           param=f"limits.{name}",
                           hint="To remove the limit, clear it (--" +
                                name.replace("_", "-") + " off; null in the admin API).")
    return value


def _budget(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool | float):
        # A float has already lost the cents it was written with; money travels as text.
        value = str(value)
    try:
        amount = Decimal(value) if isinstance(value, str | int | Decimal) else None
    except InvalidOperation:
        amount = None
    if (amount is None or not amount.is_finite() or not 0 <= amount <= BUDGET_MAX
            or -int(amount.as_tuple().exponent) > BUDGET_PLACES):
        raise InvalidField(f"The budget must be an amount in USD of 0 or more (at most "
                           f"{BUDGET_MAX}, {BUDGET_PLACES} decimals), not {value!r}.",
                           param="limits.budget_usd", hint="Write it like 25 or 12.50.")
    return amount


def _period(value: Any) -> str:
    if value is None:
        return "month"  # the default period, as in a fresh Limits
    if value not in _PERIODS:
        raise InvalidField(f"The budget period must be day or month, not {value!r}.",
                           param="limits.budget_period")
    return str(value)


# Column sizes of the store: PostgreSQL refuses longer text (SQLite would silently keep it).
TEXT_SIZES = {"name": 128, "owner": 256}


def check_text(field: str, value: str | None) -> None:
    size = TEXT_SIZES[field]
    if value is not None and len(value) > size:
        raise InvalidField(f"{field} is {len(value)} characters long; at most {size} fit.",
                           param=field, hint=f"Shorten the {field}.")


def check_limits(limits: Limits) -> Limits:
    """`limits` if every value is allowed, else InvalidField naming the first that is not."""
    for name in _COUNTS:
        _count(name, getattr(limits, name))
    _budget(limits.budget_usd)
    _period(limits.budget_period)
    return limits


def apply_limit_changes(base: Limits, changes: Mapping[str, Any] | None) -> Limits:
    """`base` with `changes` applied: each named limit is set, or cleared when its value is None.

    `changes=None` clears every limit. Budgets may come as text ("12.50"), so JSON callers never
    pass money through a float.
    """
    if changes is None:
        return Limits()
    unknown = sorted(set(changes) - set(LIMIT_FIELDS))
    if unknown:
        raise InvalidField(f"Unknown limit(s): {', '.join(unknown)}.", param="limits",
                           hint=f"Limits are {', '.join(LIMIT_FIELDS)}.")
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name in _COUNTS:
            clean[name] = _count(name, value)
        elif name == "budget_usd":
            clean[name] = _budget(value)
        else:
            clean[name] = _period(value)
    return base.merged(**clean)


def policy_changes(record: KeyRecord | TeamRecord, changes: Mapping[str, Any],
                   values: dict[str, Any]) -> dict[str, Any]:
    """`values` plus the limits and allowlist `changes` of a key or a team, keeping only what
    differs from `record` (an update that changes nothing writes nothing)."""
    if "limits" in changes:
        values["limits"] = apply_limit_changes(record.limits, changes["limits"])
    if "ip_allowlist" in changes:
        values["ip_allowlist"] = check_allowlist(changes["ip_allowlist"])
    return {k: v for k, v in values.items() if getattr(record, k) != v}


def check_allowlist(cidrs: Iterable[str] | None) -> tuple[str, ...] | None:
    """The allowlist in canonical form (10.1.2.3 -> 10.1.2.3/32), or None for "any address"."""
    if cidrs is None:
        return None
    networks: list[str] = []
    for cidr in cidrs:
        try:
            # strict=False: "10.1.2.3/8" is what people write for "10.0.0.0/8".
            network = ipaddress.ip_network(str(cidr).strip(), strict=False)
        except ValueError:
            raise InvalidField(f"{cidr!r} is not an IPv4 or IPv6 address or CIDR.",
                               param="ip_allowlist",
                               hint="Write e.g. 10.0.0.0/8, 203.0.113.7 or 2001:db8::/32.") \
                from None
        if str(network) not in networks:
            networks.append(str(network))
    if not networks:
        # An empty allowlist would refuse every address: almost surely not what was meant.
        raise InvalidField("An empty IP allowlist would refuse every address.",
                           param="ip_allowlist",
                           hint="To allow any address, clear it (--ip-allow off; null in the "
                                "admin API).")
    return tuple(networks)


def team_view(record: TeamRecord) -> dict[str, Any]:
    """What the CLI and admin API show of a team."""
    return {
        "name": record.name, "description": record.description, "owner": record.owner,
        "limits": record.limits.as_dict(),
        "ip_allowlist": list(record.ip_allowlist) if record.ip_allowlist is not None else None,
        "created_at": _iso(record.created_at),
    }


class TeamService:
    def __init__(self, runtime: ControlPlane):
        self.rt = runtime

    async def create(self, name: str, *, description: str | None = None,
                     owner: str | None = None, limits: Limits | None = None,
                     ip_allowlist: Iterable[str] | None = None) -> TeamRecord:
        if not _TEAM_NAME.fullmatch(name):
            raise InvalidField(f"{name!r} is not a valid team name.", param="name",
                               hint="Team names are 1 to 64 lowercase letters, digits or '-', "
                                    "e.g. payments or search-infra.")
        check_text("owner", owner)
        record = TeamRecord(name=name, description=redact(description) or None,
                            owner=redact(owner) or None,
                            limits=check_limits(limits or Limits()),
                            ip_allowlist=check_allowlist(ip_allowlist), created_at=time.time())
        try:
            await self.rt.store.insert_team(record)
        except DuplicateName:
            raise InvalidField(f"A team named {name!r} exists already.", param="name",
                               code="duplicate_name",
                               hint="Change it with `keystead teams update`.") from None
        # Teams ride on the keys version: the runtime reloads keys and teams together.
        await self.rt.changed(KEYS_VERSION)
        return record

    async def list(self) -> list[TeamRecord]:
        return await self.rt.store.list_teams()

    async def get(self, name: str) -> TeamRecord:
        record = await self.rt.store.get_team(name)
        if record is None:
            raise NotFound(f"No team named {name!r}.", param="name",
                           hint="`keystead teams list` shows the teams.")
        return record

    async def update(self, name: str, **changes: Any) -> TeamRecord:
        """Change a team: description, owner (None clears), limits (a mapping of limit -> value
        or None, or None to clear them all) and ip_allowlist (None: any address)."""
        unknown = sorted(set(changes) - _TEAM_CHANGES)
        if unknown:
            raise InvalidField(f"A team has no field(s) {', '.join(unknown)} to change.",
                               param=unknown[0],
                               hint=f"Changeable: {', '.join(sorted(_TEAM_CHANGES))}.")
        record = await self.get(name)
        values: dict[str, Any] = {}
        for field in ("description", "owner"):
            if field in changes:  # typed text: a pasted secret is masked
                values[field] = redact(changes[field]) or None
        check_text("owner", values.get("owner"))
        values = policy_changes(record, changes, values)
        if not values:
            return record
        updated = await self.rt.store.update_team(name, **values)
        if updated is None:  # removed meanwhile by another process
            raise NotFound(f"No team named {name!r}.", param="name")
        await self.rt.changed(KEYS_VERSION)
        return updated
