"""Key rules: a source the key never used, rotation due and overdue, keys nobody uses."""

from __future__ import annotations

from keystead.alerts.model import Alert, Snapshot
from keystead.alerts.rules.common import iso, key_where
from keystead.config.alerts import NewSourceRule, RotationRule, UnusedKeyRule
from keystead.durations import parse_duration

__all__ = ["new_source", "rotation", "unused_key"]

_KIND = {"net": "network", "ua": "user agent"}


def new_source(snapshot: Snapshot, settings: NewSourceRule) -> list[Alert]:
    """A network or user-agent family first seen within the window, on a key that was used
    for at least `learn_for` before it (a new key's first sources are what it learns)."""
    learn_for = parse_duration(settings.learn_for)
    window = parse_duration(settings.window)
    wanted = {"net"} if settings.networks else set()
    if settings.user_agents:
        wanted.add("ua")
    alerts: list[Alert] = []
    for sighting, first_of_key, known in snapshot.sightings:
        if sighting.kind not in wanted or sighting.first_seen < snapshot.now - window:
            continue
        if sighting.first_seen - first_of_key < learn_for or known > settings.max_per_key:
            continue
        key = snapshot.key(sighting.key_id)
        if key is None or key.status(snapshot.now) != "active":
            continue
        kind = _KIND[sighting.kind]
        alerts.append(Alert(
            rule="new_source", subject=f"key:{key.id}:{sighting.kind}:{sighting.value}",
            title=f"key {key.name} used from a new {kind}: {sighting.value}",
            since=sighting.first_seen,
            where={**key_where(key, key.id), sighting.kind: sighting.value},
            numbers={"first_seen": iso(sighting.first_seen),
                     "key_in_use_since": iso(first_of_key), f"known_{sighting.kind}": str(known)},
            action=f"Expected (a new deployment, a new office)? Nothing to do. If not: `keystead "
                   f"incident {key.id}` stops the key everywhere and lists its sources; an IP "
                   f"allowlist (`keystead keys update {key.id} --ip-allow CIDR`) keeps it home.",
            severity="warning"))
    return alerts


def rotation(snapshot: Snapshot, settings: RotationRule) -> list[Alert]:
    """keys.rotate_every's policy: "due" within keys.remind_before, then "overdue"."""
    alerts: list[Alert] = []
    now = snapshot.now
    for key in snapshot.keys:
        period = snapshot.rotate_every.get(key.env)
        if period is None or key.status(now) != "active":
            continue
        due_at = (key.rotated_at or key.created_at) + period
        if now < due_at - snapshot.remind_before:
            continue
        overdue = now >= due_at
        alerts.append(Alert(
            rule="rotation", subject=f"key:{key.id}:{'overdue' if overdue else 'due'}",
            title=f"key {key.name} {'is overdue for' if overdue else 'is due for'} rotation "
                  f"({iso(due_at)})",
            since=due_at if overdue else due_at - snapshot.remind_before,
            where=key_where(key, key.id),
            numbers={"due_at": iso(due_at), "last_rotated": iso(key.rotated_at or
                                                                 key.created_at)},
            action=f"`keystead keys rotate {key.id}` issues a new text; the old one keeps "
                   f"working for the grace period (24h by default) while the owner deploys it.",
            severity="warning" if overdue else "info"))
    return alerts


def unused_key(snapshot: Snapshot, settings: UnusedKeyRule) -> list[Alert]:
    after = parse_duration(settings.after)
    alerts: list[Alert] = []
    for key in snapshot.keys:
        if key.status(snapshot.now) != "active":
            continue
        last = key.last_used_at if key.last_used_at is not None else key.created_at
        if last > snapshot.now - after:
            continue
        never = key.last_used_at is None
        alerts.append(Alert(
            rule="unused_key", subject=f"key:{key.id}",
            title=f"key {key.name} {'was never used' if never else 'is unused'} for "
                  f"{int((snapshot.now - last) // 86_400)} days",
            since=last + after, where=key_where(key, key.id),
            numbers={"last_used": "never" if never else iso(last),
                     "created": iso(key.created_at), "threshold": settings.after},
            action=f"An unused key is only a risk: `keystead keys revoke {key.id}` (or "
                   f"`keystead keys disable {key.id}` to pause it).",
            severity="info"))
    return alerts
