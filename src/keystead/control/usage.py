"""Usage reports (P11, P12): spend and tokens grouped by key, team, environment, feature, route,
model, provider, endpoint, hour or day, optionally narrowed to one value of any dimension."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from keystead.errors import InvalidField
from keystead.state.store import DIMENSIONS, GROUPS, Dimension, GroupBy, UsageRow

if TYPE_CHECKING:
    from keystead.control.plane import ControlPlane

__all__ = ["DIMENSIONS", "GROUPS", "UsageService"]


class UsageService:
    def __init__(self, runtime: ControlPlane):
        self.rt = runtime

    async def report(self, group_by: GroupBy, since_s: float,
                     filters: Mapping[str, str | None] | None = None) -> list[UsageRow]:
        if group_by not in GROUPS:
            raise InvalidField(f"Cannot group usage by {group_by!r}.", param="by",
                               hint=f"Choose from {', '.join(GROUPS)}.")
        chosen: dict[Dimension, str] = {}
        for name, value in (filters or {}).items():
            if value is None:
                continue  # an option that was not given
            if name not in DIMENSIONS:
                raise InvalidField(f"Cannot filter usage by {name!r}.", param=name,
                                   hint=f"Filters are {', '.join(DIMENSIONS)}.")
            chosen[name] = value
        await self.rt.ledger.flush()  # this process's queued records count too
        return await self.rt.store.query_usage(group_by, time.time() - since_s,
                                               filters=chosen or None)
