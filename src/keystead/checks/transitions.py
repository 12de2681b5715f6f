"""The events of a check's state changes: `check.failed` when a target starts failing,
`check.recovered` when it answers again; nothing while it stays as it was.

The previous state is read from the store's events, not remembered by this process: with
replicas, the one that runs this period's checks may not be the one that ran the last. A target
seen for the first time that answers records nothing.

    check.failed     detail {"target": "provider:<name>#<n>" | "route:<name>",
                             "status": int | null, "error": "<what failed, and the fix>",
                             "class": "http_401" | "timeout" | ...}
    check.recovered  detail {"target": ...}
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from keystead.state.records import EventRecord

if TYPE_CHECKING:
    from keystead.checks.result import CheckResult
    from keystead.state.store import Store

__all__ = ["FAILED", "RECOVERED", "last_states", "record_transitions"]

FAILED = "check.failed"
RECOVERED = "check.recovered"
# Events read back to find each target's state: far more than a config has targets.
_LOOKBACK = 2000


async def last_states(store: Store) -> dict[str, str]:
    """target -> the kind of its latest check event (FAILED or RECOVERED)."""
    latest: dict[str, tuple[float, int, str]] = {}
    for kind in (FAILED, RECOVERED):
        for event in await store.list_events(_LOOKBACK, kind=kind):
            target = event.detail.get("target")
            if not isinstance(target, str):
                continue
            order = (event.ts, event.id or 0, kind)
            if target not in latest or order[:2] > latest[target][:2]:
                latest[target] = order
    return {target: found[2] for target, found in latest.items()}


async def record_transitions(store: Store, results: Sequence[CheckResult],
                             now: float | None = None) -> list[EventRecord]:
    """Write an event for every target whose state changed; return them."""
    states = await last_states(store)
    now = time.time() if now is None else now
    written: list[EventRecord] = []
    for result in results:
        previous = states.get(result.target)
        if not result.ok and previous != FAILED:
            event = EventRecord(kind=FAILED, ts=now, actor="gateway", detail={
                "target": result.target, "status": result.status,
                "error": result.detail[:500], "class": result.error})
        elif result.ok and previous == FAILED:
            event = EventRecord(kind=RECOVERED, ts=now, actor="gateway",
                                detail={"target": result.target})
        else:
            continue
        await store.insert_event(event)
        written.append(event)
    return written
