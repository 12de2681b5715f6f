"""`keystead alerts` and /admin/alerts: the rules and their alerts, test messages, silences.

One service for both faces (the CLI embedded, and the admin API the CLI calls with --server).
"""

from __future__ import annotations

import builtins
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keystead.alerts.channels import build_channels, deliver
from keystead.alerts.messages import test_message
from keystead.alerts.silences import check_target
from keystead.config.alerts import RULE_NAMES
from keystead.errors import InvalidField, NotFound
from keystead.state.records import SilenceRecord

if TYPE_CHECKING:
    from keystead.control.plane import ControlPlane

__all__ = ["AlertService"]

_SHOW_RESOLVED_S = 7 * 86_400.0
_MAX_SILENCE_S = 90 * 86_400.0


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class AlertService:
    def __init__(self, runtime: ControlPlane, actor: str = "cli"):
        self.rt = runtime
        self.actor = actor

    async def list(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every rule with its alerts (firing, and resolved in the last 7 days); a rule with
        none is one row saying `ok` (or `off`)."""
        now = time.time() if now is None else now
        config = self.rt.config.alerts
        alerts = await self.rt.store.list_alerts(since=now - _SHOW_RESOLVED_S)
        silences = {s.target: s for s in await self.rt.store.list_silences(now)}
        rows: list[dict[str, Any]] = []
        for rule in RULE_NAMES:
            enabled = config.enabled and getattr(config.rules, rule).enabled
            mine = sorted((a for a in alerts if a.rule == rule),
                          key=lambda a: (a.state != "firing", -a.fired_at))
            if not mine:
                silence = silences.get(rule)
                rows.append({"rule": rule, "subject": None, "state": "ok" if enabled else "off",
                             "since": None, "last_sent": None, "title": None,
                             "silenced_until": _iso(silence.until) if silence else None,
                             "delivery": None})
            for alert in mine:
                silence = silences.get(f"{rule}:{alert.subject}") or silences.get(rule)
                state = alert.state
                if silence is not None and state == "firing":
                    state = "silenced"
                rows.append({
                    "rule": rule, "subject": alert.subject, "state": state,
                    "since": _iso(alert.fired_at if alert.state == "firing"
                                  else alert.resolved_at),
                    "last_sent": _iso(alert.sent_at), "title": alert.title,
                    "silenced_until": _iso(silence.until) if silence else None,
                    "delivery": alert.delivery})
        return rows

    async def test(self, channel: str | None = None) -> builtins.list[dict[str, Any]]:
        """Send a test message to each channel (or the one named); say which worked."""
        config = self.rt.config.alerts
        channels = build_channels(config)
        if channel is not None:
            channels = [c for c in channels if c.name == channel]
            if not channels:
                raise NotFound(f"No alert channel {channel!r}.",
                               hint="The channels are under alerts.channels in keystead.yaml"
                                    + (f": {', '.join(config.channels)}." if config.channels
                                       else " (there are none yet)."))
        if not channels:
            raise InvalidField("No alert channels are configured.", param="channel",
                               hint="Add one under alerts.channels (docs/monitoring.md).")
        message = test_message(time.time(), config.runbook_url)
        results: builtins.list[dict[str, Any]] = []
        for each in channels:
            result = await deliver(each, message, timeout_s=config.send_timeout_s, retries=0)
            results.append({"channel": each.name, "ok": result == "sent", "result": result})
        return results

    async def silence(self, target: str, for_s: float, reason: str | None = None
                      ) -> dict[str, Any]:
        try:
            check_target(target)
        except ValueError as exc:
            raise InvalidField(str(exc), param="target") from None
        if not 0 < for_s <= _MAX_SILENCE_S:
            raise InvalidField("A silence lasts more than 0s and at most 90d.", param="for")
        if reason is not None and (len(reason) > 500 or not reason.isprintable()):
            raise InvalidField("The reason is one line of at most 500 characters.",
                               param="reason")
        from keystead.control.typed_text import redact

        reason = redact(reason)  # a reason may quote what leaked
        now = time.time()
        record = SilenceRecord(target=target, until=now + for_s, reason=reason, created_at=now,
                               actor=self.actor)
        await self.rt.store.put_silence(record)
        return {"target": target, "until": _iso(record.until), "reason": reason}

    async def unsilence(self, target: str) -> dict[str, Any]:
        if not await self.rt.store.delete_silence(target):
            raise NotFound(f"No silence on {target!r}.",
                           hint="`keystead alerts list` shows what is silenced.")
        return {"target": target, "removed": True}
