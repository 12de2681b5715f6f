"""The alert engine: every `alerts.evaluate_every`, gather a snapshot, run the enabled rules,
and turn what changed into transitions in the store, and those into messages.

Every serving gateway runs one. What makes N replicas send one message per event, not N: the
alert's state lives in the store (`alerts` table), and each transition is a conditional write
(`Store.fire_alert`: insert if absent, or re-fire only if resolved longer ago than the
cool-down; `Store.resolve_alert`: only the firing it saw). One replica's write matches, the
others' match nothing; only the replica that won sends. Sending runs in tasks of its own, with a
timeout and retries per channel, so a channel that hangs never delays the next evaluation; the
messages of one alert go out in order (a "resolved" before the next "firing").

A replica that won a firing and died before it recorded the delivery (killed, or stopped in the
middle of its retries) would leave the message unsent forever: a firing alert still unsent
after the longest a delivery can take is claimed (`Store.claim_unsent_alert`, conditional too)
and sent by one of the others.

Each transition is logged as one JSON line (logger `keystead.alerts`) and, once delivered (or
given up), recorded as an event `alert.firing` / `alert.resolved` with what each channel did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import orjson

from keystead.alerts.channels import Channel, build_channels, deliver, takes
from keystead.alerts.gather import AlertSource, Breakers, gather
from keystead.alerts.messages import Kind, Message, runbook_link
from keystead.alerts.model import Alert, alert_from_detail
from keystead.alerts.rules import RULES
from keystead.alerts.silences import silenced
from keystead.config.alerts import RULE_NAMES, AlertsConfig
from keystead.durations import parse_duration
from keystead.state.records import AlertRecord, EventRecord

if TYPE_CHECKING:
    from keystead.runtime import Runtime

__all__ = ["FIRING_EVENT", "RESOLVED_EVENT", "AlertEngine", "Transition", "open_breakers"]

log = logging.getLogger("keystead.alerts")

FIRING_EVENT = "alert.firing"
RESOLVED_EVENT = "alert.resolved"
_SILENCED = {"*": "silenced"}
# More messages than this of one rule and kind in one round (500 idle keys on the day
# unused_key is turned on) go out as one digest per channel: a channel is read by people, and
# Slack takes about one message a second per webhook.
DIGEST_OVER = 5
_DIGEST_LISTS = 20  # subjects a digest names; the rest are counted
_KEEP_RESOLVED_S = 30 * 86_400.0  # resolved alerts older than this are forgotten
_PRUNE_EVERY_S = 3600.0


def open_breakers(runtime: Runtime) -> dict[str, float]:
    """The breakers this replica sees open (refreshed from the shared counters every second)."""
    found: dict[str, float] = {}
    for name in runtime.routes.deployment_ids():
        until = runtime.breakers.open_until(name)
        if until is not None:
            found[name] = until
    return found


@dataclass(frozen=True, slots=True)
class Transition:
    kind: Kind  # "firing" or "resolved"
    alert: Alert
    silenced: bool
    notify: bool  # False: the rule does not send "resolved" messages (or was turned off)


class AlertEngine:
    def __init__(self, source: AlertSource, *, breakers: Breakers | None = None,
                 clock: Callable[[], float] = time.time,
                 channels: Callable[[AlertsConfig], Sequence[Channel]] = build_channels,
                 backoff_s: float = 1.0):
        self.source = source
        self._breakers = breakers
        self._clock = clock
        self._channels = channels
        self._backoff_s = backoff_s
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._latest: dict[tuple[str, str], asyncio.Task[None]] = {}  # per alert, its last send
        self._pruned_at = 0.0
        self._failing = False
        self._stood_down = False  # alerts.enabled is false and its firing alerts are resolved

    # the loop
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="keystead-alerts")

    async def stop(self, grace_s: float = 5.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.drain(grace_s)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait for the messages being sent (tests; shutdown, bounded)."""
        if not self._sending:
            return
        _done, pending = await asyncio.wait(set(self._sending), timeout=timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            config = self.source.config.alerts
            try:
                # Turned off: one more round resolves (without a message) what is firing, so
                # `keystead alerts list` does not show alerts nobody evaluates any more.
                if config.enabled or not self._stood_down:
                    await self.evaluate()
            except Exception as exc:  # the store is down: said once, then when it is back
                if not self._failing:
                    log.error("alerts: evaluation failed (%s); retrying every %s",
                              type(exc).__name__, config.evaluate_every)
                self._failing = True
            else:
                if self._failing:
                    log.info("alerts: evaluation works again")
                self._failing = False
            await asyncio.sleep(parse_duration(config.evaluate_every))

    # one evaluation
    async def evaluate(self, now: float | None = None) -> list[Transition]:
        """Run the rules once; returns the transitions this replica won (and is sending)."""
        now = self._clock() if now is None else now
        config = self.source.config.alerts
        store = self.source.store
        settings = {name: getattr(config.rules, name) for name in RULE_NAMES}
        enabled = {name for name, rule in settings.items() if rule.enabled and config.enabled}
        self._stood_down = not config.enabled
        snapshot, failed = await gather(self.source, now, enabled, self._breakers)
        current: dict[tuple[str, str], Alert] = {}
        evaluated: set[str] = set()
        for name in RULE_NAMES:
            if name not in enabled or name in failed:
                continue
            if name == "breaker_open" and self._breakers is None:
                continue
            try:
                found = RULES[name](snapshot, settings[name])
            except Exception:
                log.exception("alerts: rule %s failed; it skips this round", name)
                continue
            evaluated.add(name)
            for alert in found:
                current[(alert.rule, alert.subject[:200])] = alert
        longest = max([parse_duration(config.cooldown)]
                      + [parse_duration(r.cooldown) for r in settings.values() if r.cooldown])
        known = {(r.rule, r.subject): r for r in await store.list_alerts(since=now - longest)}
        silences = await store.list_silences(now)
        won: list[Transition] = []
        for (rule, subject), alert in current.items():
            record = known.get((rule, subject))
            if record is not None and record.state == "firing":
                continue  # de-duplication: it is firing already
            cooldown = parse_duration(settings[rule].cooldown or config.cooldown)
            if record is not None and record.resolved_at is not None \
                    and record.resolved_at > now - cooldown:
                continue  # the cool-down: resolved too recently to fire again
            fired = AlertRecord(rule=rule, subject=subject, state="firing", fired_at=now,
                                title=alert.title[:500], detail=alert.detail())
            if await store.fire_alert(fired, cooldown):
                won.append(Transition("firing", alert, silenced(silences, rule, subject), True))
        for (rule, subject), record in known.items():
            if record.state != "firing" or (rule, subject) in current:
                continue
            turned_off = rule in RULE_NAMES and rule not in enabled
            if rule not in evaluated and not turned_off:
                continue  # no data this round: neither fire nor resolve
            if await store.resolve_alert(rule, subject, now, fired_at=record.fired_at):
                notify = not turned_off and settings[rule].send_resolved
                alert = alert_from_detail(rule, subject, record.title, record.detail)
                # Nobody was told it fired (a silence then): nobody is told it ended either.
                quiet = silenced(silences, rule, subject) or record.delivery == _SILENCED
                won.append(Transition("resolved", alert, quiet, notify))
        self._announce_all(won, now, config)
        stale = now - self.delivery_bound(config)
        for (rule, subject), record in known.items():
            if record.state != "firing" or record.sent_at is not None \
                    or record.fired_at >= stale or (rule, subject) not in current:
                continue
            if await store.claim_unsent_alert(rule, subject, record.fired_at, now):
                alert = alert_from_detail(rule, subject, record.title, record.detail)
                log.warning("alerts: %s:%s fired at %s was never sent (its gateway stopped?); "
                            "sending it now", rule, subject, record.fired_at)
                transition = Transition("firing", alert, silenced(silences, rule, subject), True)
                won.append(transition)
                self._announce(transition, record.fired_at, config)
        if now - self._pruned_at >= _PRUNE_EVERY_S:
            self._pruned_at = now
            await store.prune_alerts(now - _KEEP_RESOLVED_S)
        return won

    async def _deliver(self, message: Message, config: AlertsConfig) -> dict[str, str]:
        channels = [c for c in self._channels(config) if takes(c, message.alert.rule)]
        results = await asyncio.gather(*(deliver(
            c, message, timeout_s=config.send_timeout_s, retries=config.retries,
            backoff_s=self._backoff_s) for c in channels))
        return dict(zip((c.name for c in channels), results, strict=True))

    def delivery_bound(self, config: AlertsConfig) -> float:
        """The longest a delivery can take (every attempt timing out, every backoff at its
        longest), plus a margin: an alert still unsent after this lost its sender."""
        attempts = (config.retries + 1) * (config.send_timeout_s + 1.0)
        backoffs = sum(min(60.0, self._backoff_s * 2.0 ** i) for i in range(config.retries))
        return attempts + backoffs + max(60.0, 2 * parse_duration(config.evaluate_every))

    # telling people
    def _announce_all(self, won: Sequence[Transition], now: float,
                      config: AlertsConfig) -> None:
        """Each transition's own message, but a crowd of one rule and kind as one digest."""
        crowds: dict[tuple[str, str], list[Transition]] = {}
        for transition in won:
            if transition.notify and not transition.silenced:
                crowds.setdefault((transition.kind, transition.alert.rule), []).append(
                    transition)
        digested = {id(t) for crowd in crowds.values() if len(crowd) > DIGEST_OVER
                    for t in crowd}
        for transition in won:
            if id(transition) not in digested:
                self._announce(transition, now, config)
        for crowd in crowds.values():
            if len(crowd) > DIGEST_OVER:
                digest = _Digest(Message(crowd[0].kind, _digest(crowd), now,
                                         runbook_link(config.runbook_url,
                                                      crowd[0].alert.rule)))
                for transition in crowd:
                    self._announce(transition, now, config, digest=digest)

    def _announce(self, transition: Transition, now: float, config: AlertsConfig,
                  digest: _Digest | None = None) -> None:
        alert = transition.alert
        log.warning(orjson.dumps({
            "event": FIRING_EVENT if transition.kind == "firing" else RESOLVED_EVENT,
            "rule": alert.rule, "subject": alert.subject, "title": alert.title,
            "severity": alert.severity, "where": dict(alert.where),
            "numbers": dict(alert.numbers), "silenced": transition.silenced}).decode())
        message = Message(transition.kind, alert, now, runbook_link(config.runbook_url,
                                                                    alert.rule))
        key = (alert.rule, alert.subject)
        task = asyncio.get_running_loop().create_task(
            self._send(transition, message, config, self._latest.get(key), digest))
        self._sending.add(task)
        self._latest[key] = task

        def done(task: asyncio.Task[None]) -> None:
            self._sending.discard(task)
            if self._latest.get(key) is task:
                del self._latest[key]

        task.add_done_callback(done)

    async def _send(self, transition: Transition, message: Message, config: AlertsConfig,
                    after: asyncio.Task[None] | None = None,
                    digest: _Digest | None = None) -> None:
        alert = message.alert
        if after is not None:  # this alert's previous message (still retrying?) goes first
            await asyncio.wait({after})
        outcome: dict[str, str] = {}
        if transition.silenced:
            outcome = dict(_SILENCED)
        elif transition.notify:
            outcome = await (digest.deliver(partial(self._deliver, config=config))
                             if digest is not None else self._deliver(message, config))
        store = self.source.store
        try:
            if transition.kind == "firing":
                await store.record_alert_delivery(alert.rule, alert.subject, self._clock(),
                                                  outcome, fired_at=message.at)
            await store.insert_event(EventRecord(
                kind=FIRING_EVENT if transition.kind == "firing" else RESOLVED_EVENT,
                ts=message.at, key_id=alert.where.get("key_id"), actor="gateway",
                detail={"rule": alert.rule, "subject": alert.subject, "title": alert.title,
                        "where": dict(alert.where), "numbers": dict(alert.numbers),
                        "delivery": outcome, "silenced": transition.silenced}))
        except Exception as exc:
            log.error("alerts: recording the delivery of %s:%s failed (%s)", alert.rule,
                      alert.subject, type(exc).__name__)


class _Digest:
    """One message for a crowd of alerts: sent once, by whichever of their tasks asks first;
    the others share its outcome (each still records its own delivery and event)."""

    def __init__(self, message: Message):
        self.message = message
        self._sent: asyncio.Future[dict[str, str]] | None = None

    async def deliver(self, send: Callable[[Message], Awaitable[dict[str, str]]]
                      ) -> dict[str, str]:
        if self._sent is None:
            self._sent = asyncio.ensure_future(send(self.message))
        return dict(await asyncio.shield(self._sent))


def _digest(crowd: Sequence[Transition]) -> Alert:
    """One alert standing for many of one rule (`DIGEST_OVER`): it names the first subjects
    and counts the rest; each alert keeps its own state, events and delivery record."""
    first = crowd[0].alert
    subjects = [t.alert.subject for t in crowd]
    listed = ", ".join(subjects[:_DIGEST_LISTS])
    more = len(subjects) - _DIGEST_LISTS
    ended = " ended" if crowd[0].kind == "resolved" else ""
    return Alert(rule=first.rule, subject=f"{len(subjects)} alerts",
                 title=f"{len(subjects)} {first.rule} alerts{ended}: "
                       f"{listed}{f' and {more} more' if more > 0 else ''}",
                 since=min(t.alert.since for t in crowd),
                 numbers={"alerts": str(len(subjects))},
                 action=f"keystead alerts list shows each; {first.action}".strip("; "),
                 severity=max((t.alert.severity for t in crowd),
                              key=("info", "warning", "critical").index))
