"""The alerts' state in the SQL store: alerts, silences, the sources each key was seen from,
and the two ledger reads the alert rules make.

Mixed into `SQLStore` (sql_store.py), whose connection helpers it uses. Each alert transition
is a conditional write, so that when several gateways evaluate the same rules, one replica's
write matches and only that one sends the message (alerts/engine.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from keystead.state import schema as t
from keystead.state.records import AlertRecord, KeySighting, RequestOutcome, SilenceRecord

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["AlertTables"]


class AlertTables:
    if TYPE_CHECKING:  # what SQLStore provides
        def _begin(self) -> AbstractAsyncContextManager[AsyncConnection]: ...
        async def _write(self, statement: Any, params: Any = None) -> sa.CursorResult[Any]: ...
        async def _read(self, statement: Any) -> list[Any]: ...
        def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert: ...

    async def fire_alert(self, alert: AlertRecord, cooldown_s: float) -> bool:
        table = t.alerts
        values = {"state": "firing", "fired_at": alert.fired_at, "resolved_at": None,
                  "title": alert.title, "detail": dict(alert.detail), "sent_at": None,
                  "delivery": None}
        async with self._begin() as conn:
            inserted = await conn.execute(self._insert(table).values(
                rule=alert.rule, subject=alert.subject, **values,
            ).on_conflict_do_nothing(index_elements=[table.c.rule, table.c.subject]))
            if inserted.rowcount:
                return True
            # Resolved long enough ago (the cool-down): fire again. PostgreSQL re-checks the
            # WHERE on the row another transaction just changed, so only one UPDATE matches.
            updated = await conn.execute(table.update().where(
                (table.c.rule == alert.rule) & (table.c.subject == alert.subject)
                & (table.c.state == "resolved")
                & (table.c.resolved_at <= alert.fired_at - cooldown_s)).values(**values))
            return bool(updated.rowcount)

    async def resolve_alert(self, rule: str, subject: str, now: float,
                            fired_at: float | None = None) -> bool:
        table = t.alerts
        where = (table.c.rule == rule) & (table.c.subject == subject) \
            & (table.c.state == "firing")
        if fired_at is not None:  # that firing, not a later one another replica started
            where &= table.c.fired_at == fired_at
        result = await self._write(table.update().where(where).values(state="resolved",
                                                                      resolved_at=now))
        return bool(result.rowcount)

    async def claim_unsent_alert(self, rule: str, subject: str, fired_at: float,
                                 now: float) -> bool:
        table = t.alerts
        result = await self._write(table.update().where(
            (table.c.rule == rule) & (table.c.subject == subject)
            & (table.c.state == "firing") & (table.c.fired_at == fired_at)
            & table.c.sent_at.is_(None),
        ).values(sent_at=now, delivery={"*": "resending"}))
        return bool(result.rowcount)

    async def record_alert_delivery(self, rule: str, subject: str, sent_at: float,
                                    delivery: Mapping[str, str],
                                    fired_at: float | None = None) -> None:
        table = t.alerts
        where = (table.c.rule == rule) & (table.c.subject == subject)
        if fired_at is not None:  # not onto a later firing of the same alert
            where &= table.c.fired_at == fired_at
        await self._write(table.update().where(where).values(sent_at=sent_at,
                                                             delivery=dict(delivery)))

    async def list_alerts(self, since: float | None = None) -> list[AlertRecord]:
        table = t.alerts
        statement = sa.select(table).order_by(table.c.rule, table.c.fired_at)
        if since is not None:  # firing ones, and those resolved since `since`
            statement = statement.where((table.c.state == "firing")
                                        | (table.c.resolved_at >= since))
        return [AlertRecord(rule=r.rule, subject=r.subject, state=r.state, fired_at=r.fired_at,
                            resolved_at=r.resolved_at, title=r.title, detail=dict(r.detail),
                            sent_at=r.sent_at, delivery=r.delivery)
                for r in await self._read(statement)]

    async def prune_alerts(self, resolved_before: float) -> int:
        table = t.alerts
        result = await self._write(table.delete().where(
            (table.c.state == "resolved") & (table.c.resolved_at < resolved_before)))
        return int(result.rowcount or 0)

    async def put_silence(self, silence: SilenceRecord) -> None:
        table = t.alert_silences
        statement = self._insert(table).values(
            target=silence.target, until=silence.until, reason=silence.reason,
            created_at=silence.created_at, actor=silence.actor)
        await self._write(statement.on_conflict_do_update(
            index_elements=[table.c.target],
            set_={name: statement.excluded[name] for name in ("until", "reason", "created_at",
                                                              "actor")}))

    async def delete_silence(self, target: str) -> bool:
        table = t.alert_silences
        result = await self._write(table.delete().where(table.c.target == target))
        return bool(result.rowcount)

    async def list_silences(self, now: float) -> list[SilenceRecord]:
        table = t.alert_silences
        rows = await self._read(sa.select(table).where(table.c.until > now)
                                .order_by(table.c.target))
        return [SilenceRecord(target=r.target, until=r.until, reason=r.reason,
                              created_at=r.created_at, actor=r.actor) for r in rows]

    async def add_key_sightings(self, sightings: Sequence[KeySighting]) -> None:
        if not sightings:
            return
        table = t.key_sightings
        # Sorted and without duplicates: one statement, rows locked in the same order by every
        # writer; a source another gateway recorded first keeps its (earlier) first_seen.
        unique = {(s.key_id, s.kind, s.value): s for s in sorted(
            sightings, key=lambda s: -s.first_seen)}
        rows = [{"key_id": s.key_id, "kind": s.kind, "value": s.value,
                 "first_seen": s.first_seen} for _, s in sorted(unique.items())]
        await self._write(self._insert(table).on_conflict_do_nothing(
            index_elements=[table.c.key_id, table.c.kind, table.c.value]), rows)

    async def new_key_sightings(self, since: float, limit: int = 1000
                                ) -> list[tuple[KeySighting, float, int]]:
        table = t.key_sightings
        # The history of the keys with a new source only (by the primary key), not of every
        # key: the table only grows, and this runs every evaluation.
        fresh_keys = sa.select(table.c.key_id).where(table.c.first_seen >= since)
        history = (sa.select(table.c.key_id, table.c.kind,
                             sa.func.min(table.c.first_seen).label("first"),
                             sa.func.count().label("known"))
                   .where(table.c.key_id.in_(fresh_keys))
                   .group_by(table.c.key_id, table.c.kind).subquery())
        statement = (sa.select(table, history.c.first, history.c.known)
                     .join(history, (history.c.key_id == table.c.key_id)
                           & (history.c.kind == table.c.kind))
                     .where(table.c.first_seen >= since)
                     .order_by(table.c.first_seen).limit(limit))
        return [(KeySighting(key_id=r.key_id, kind=r.kind, value=r.value,
                             first_seen=r.first_seen), float(r.first), int(r.known))
                for r in await self._read(statement)]

    async def request_outcomes(self, since: float) -> list[RequestOutcome]:
        u = t.usage.c
        statement = (sa.select(u.provider, u.route, u.status, sa.func.count())
                     .where(u.ts >= since).group_by(u.provider, u.route, u.status))
        return [RequestOutcome(provider=r[0], route=r[1], status=int(r[2]), count=int(r[3]))
                for r in await self._read(statement)]

    async def auth_failures(self, since: float) -> dict[str, int]:
        u = t.usage.c
        # The gateway's own 401s (no provider): the key text named this key and was refused.
        # Grouped by an expression: grouped by the column, SQLite walks the whole ledger in
        # ix_usage_key_ts order instead of the window's rows by ix_usage_ts.
        key = sa.func.coalesce(u.key_id, "")
        statement = (sa.select(key, sa.func.count())
                     .where(u.ts >= since, u.status == 401, u.provider.is_(None),
                            u.key_id.is_not(None))
                     .group_by(key))
        return {str(r[0]): int(r[1]) for r in await self._read(statement)}
