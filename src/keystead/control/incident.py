"""The leaked-key incident in one step (P6): stop the key, issue its replacement, tell the owner,
and show what the key did and from where.

Stopping is a rotation without grace (the replacement keeps scopes, limits, budget and usage
history), or a revocation with `replace=False`. Either reaches every gateway within a second
(at once with Redis). The forensics read the ledger: nothing here needs the request bodies.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from keystead.control.keys import KeyService
from keystead.control.typed_text import redact
from keystead.errors import InvalidField
from keystead.keys.format import PREFIX, parse_key
from keystead.state.records import KeyRecord, UsageRecord

if TYPE_CHECKING:
    from keystead.control.plane import ControlPlane

__all__ = ["Incident", "IncidentService", "forensics"]

log = logging.getLogger("keystead.incident")

_DAY = 86_400.0
_RECENT_S = _DAY  # "new" means first seen in the last day
_MAX_ROWS = 50_000  # the ledger rows read for the forensics (most recent first)


@dataclass
class Incident:
    key: dict[str, Any]  # the key as the CLI shows it, after the incident
    action: str  # "rotated" or "revoked"
    new_key: str | None  # the replacement's text, shown once
    started_at: float
    stopped_at: float  # when the store (and so every gateway within a second) refused the key
    notified: bool | None  # None: no webhook configured
    forensics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "action": self.action, "new_key": self.new_key,
                "stop_ms": round((self.stopped_at - self.started_at) * 1000, 1),
                "owner_notified": self.notified, "forensics": self.forensics}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _top(counter: Counter[str], n: int = 10) -> list[dict[str, Any]]:
    return [{"value": value, "requests": count} for value, count in counter.most_common(n)]


def forensics(records: Iterable[UsageRecord], now: float, days: float) -> dict[str, Any]:
    """What a key did in the last `days`: by source IP, user agent, model and hour, first and
    last seen, and what is unusual against its own history (new sources in the last day, an
    hour far above its usual rate, refusals that look like probing)."""
    since = now - days * _DAY
    rows: list[UsageRecord] = []
    # A key text the gateway refused (401, no provider) names the key on its ledger row for
    # the auth_failures alert; it is not a use of the key: anyone who knows the key's public id
    # can make one. Counted apart, so it cannot fake the key's sources or its last use.
    refused: list[UsageRecord] = []
    for r in records:
        if r.ts >= since:
            (refused if r.status == 401 and r.provider is None else rows).append(r)
    refused_texts = {"count": len(refused),
                     "by_ip": _top(Counter(r.client_ip or "unknown" for r in refused), 5)}
    if not rows:
        return {"requests": 0, "window_days": days, "first_seen": None, "last_seen": None,
                "by_ip": [], "by_user_agent": [], "by_model": [], "by_hour": [],
                "unusual": _refused_line(refused), "refused_texts": refused_texts}
    by_ip: Counter[str] = Counter(r.client_ip or "unknown" for r in rows)
    by_agent: Counter[str] = Counter(r.user_agent or "unknown" for r in rows)
    by_model: Counter[str] = Counter(r.model_requested or "-" for r in rows)
    by_hour: Counter[str] = Counter(
        datetime.fromtimestamp(r.ts - r.ts % 3600, UTC).strftime("%Y-%m-%dT%H:00Z") for r in rows)
    cost = sum((r.cost_usd for r in rows), Decimal(0))
    unusual: list[str] = []
    for kind, attribute in (("source IP", "client_ip"), ("user agent", "user_agent")):
        first: dict[str, float] = {}
        for r in rows:
            value = getattr(r, attribute) or "unknown"
            first[value] = min(first.get(value, r.ts), r.ts)
        older = [v for v, ts in first.items() if ts < now - _RECENT_S]
        fresh = sorted(v for v, ts in first.items() if ts >= now - _RECENT_S)
        if fresh and older:  # new sources matter only against a history of other ones
            unusual.append(f"new {kind}{'s' if len(fresh) > 1 else ''} in the last 24 h: "
                           f"{', '.join(fresh[:5])}")
    counts = sorted(by_hour.values())
    median = counts[len(counts) // 2]
    peak_hour, peak = by_hour.most_common(1)[0]
    if len(counts) >= 4 and peak >= 5 * max(median, 1) and peak >= 20:
        unusual.append(f"{peak} requests in the hour {peak_hour}, {peak / max(median, 1):.0f}x "
                       f"its median hour")
    denied = sum(1 for r in rows if r.status in (401, 403))
    if denied >= 5:
        unusual.append(f"{denied} requests refused with 401/403 (probing scopes or models?)")
    unusual.extend(_refused_line(refused))
    return {
        "requests": len(rows), "window_days": days, "cost_usd": format(cost, "f"),
        "first_seen": _iso(min(r.ts for r in rows)), "last_seen": _iso(max(r.ts for r in rows)),
        "by_ip": _top(by_ip), "by_user_agent": _top(by_agent), "by_model": _top(by_model),
        "by_hour": [{"value": h, "requests": c} for h, c in sorted(by_hour.items())[-48:]],
        "unusual": unusual, "refused_texts": refused_texts,
    }


def _refused_line(refused: list[UsageRecord]) -> list[str]:
    if not refused:
        return []
    sources = sorted({r.client_ip or "unknown" for r in refused})
    return [f"{len(refused)} key texts naming this key were refused (revoked, expired or a "
            f"wrong secret) from {', '.join(sources[:5])}{' ...' if len(sources) > 5 else ''}"]


class IncidentService:
    def __init__(self, runtime: ControlPlane, actor: str = "cli"):
        self.rt = runtime
        self.keys = KeyService(runtime, actor)

    async def find(self, key_or_text: str) -> KeyRecord:
        """The key by id, name, or its leaked text (verified against its hash, so a text that
        merely looks like one of ours is not taken for it)."""
        text = key_or_text.strip()
        if not text.startswith(PREFIX):
            return await self.keys.get(text)
        parsed = parse_key(text)
        if parsed is None:
            raise InvalidField("This is not a whole keystead key (its checksum fails).",
                               param="key", hint="Paste the complete ksk_... text, or the key's "
                                                 "id or name.")
        record = await self.keys.get(parsed.key_id)
        hashes = (record.key_hash if record.current_credential == parsed.key_id
                  else record.previous_hash)
        if hashes is None or not self.rt.hasher.matches(text, hashes):
            raise InvalidField(
                f"The text has the id {parsed.key_id} of key {record.name}, but it is not that "
                "key's text.", param="key",
                hint="It may be forged or already rotated away; the key itself was not touched.")
        return record

    async def respond(self, key_or_text: str, *, reason: str | None = None,
                      replace: bool = True) -> Incident:
        started = time.time()
        # A reason often quotes the leak itself: masked before it is logged, stored or posted.
        reason = redact(reason)
        record = await self.find(key_or_text)
        if record.revoked_at is not None:
            raise InvalidField(f"Key {record.id} ({record.name}) is revoked already.",
                               param="key", hint="Its forensics: keystead usage --key "
                                                 f"{record.name} --by hour.")
        new_key: str | None = None
        if replace:
            created = await self.keys.rotate(record.id, grace_s=0)
            record, new_key, action = created.record, created.text, "rotated"
        else:
            record, action = await self.keys.revoke(record.id, reason or "incident"), "revoked"
        stopped = time.time()
        log.warning("incident: key %s (%s) %s; reason: %s", record.id, record.name, action,
                    reason or "-")
        days = self.rt.config.incidents.forensics_days
        await self.rt.ledger.flush()  # this gateway's last second of the key's use counts too
        report = forensics(await self.rt.store.recent_usage(_MAX_ROWS, key_id=record.id),
                           stopped, days)
        incident = Incident(self.keys.view(record), action, new_key, started, stopped, None,
                            report)
        incident.notified = await self._notify(record, incident, reason)
        await self.keys.record("incident", record.id, reason=reason, action=action,
                               stop_ms=round((stopped - started) * 1000, 1),
                               owner_notified=incident.notified,
                               unusual=report["unusual"], requests=report["requests"])
        return incident

    async def _notify(self, record: KeyRecord, incident: Incident,
                      reason: str | None) -> bool | None:
        """Post a Slack-compatible message ({"text": ...}) to the configured webhook."""
        secret = self.rt.config.incidents.webhook_url
        if secret is None:
            return None
        report = incident.forensics
        from keystead.alerts.channels import DeliveryFailed
        from keystead.alerts.channels.http import post_json
        from keystead.alerts.messages import slack_escape

        # Slack mrkdwn: an owner (operator text) or a reason of `<!channel>` stays text.
        text = slack_escape(f":rotating_light: keystead key *{record.name}* ({record.id}) was "
                f"{incident.action} after a suspected leak"
                f"{f' ({reason})' if reason else ''}. Owner: {record.owner or 'unknown'}; "
                f"team: {record.team or '-'}. Last {report['window_days']} days: "
                f"{report['requests']} requests, last seen {report['last_seen'] or 'never'}."
                + (f" Unusual: {'; '.join(report['unusual'])}." if report["unusual"] else "")
                + (" A replacement was issued to the operator; ask them for it."
                   if incident.new_key else "")).replace("\n", " ")
        payload = {"text": text, "key_id": record.id, "key_name": record.name,
                   "owner": record.owner, "team": record.team, "action": incident.action,
                   "reason": reason}
        try:
            await post_json(secret, orjson.dumps(payload), {}, timeout_s=10.0)
        except DeliveryFailed as exc:  # its text never holds the URL (a secret)
            log.error("incident webhook failed: %s", exc)
            return False
        return True
