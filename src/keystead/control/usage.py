"""Usage reports (P11, P12): spend and tokens grouped by key, team, model, feature or day."""

from __future__ import annotations

import time

from keystead.runtime import Runtime
from keystead.state.store import GROUPS, GroupBy, UsageRow

__all__ = ["GROUPS", "UsageService"]


class UsageService:
    def __init__(self, runtime: Runtime):
        self.rt = runtime

    async def report(self, group_by: GroupBy, since_s: float) -> list[UsageRow]:
        await self.rt.ledger.flush()  # this process's queued records count too
        return await self.rt.store.query_usage(group_by, time.time() - since_s)
