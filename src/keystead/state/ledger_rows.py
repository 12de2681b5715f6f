"""The usage ledger as the drivers take it: a record as a row of the ledger's columns, a batch
summed into hourly rollup rows, the two statements in both drivers' parameter styles, and the
errors that mean the database refused the values.

`SQLStore.insert_usage` (sql_store.py) runs these with the driver's own `executemany`:
SQLAlchemy's per-row parameter processing cost more than the database's work on a batch of
500 rows.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from keystead.state import schema as t
from keystead.state.records import UsageRecord

__all__ = ["LEDGER_INSERT", "NANO", "ROLLUP_UPSERT", "ledger_row", "refused_values", "rollups",
           "usage_from_row"]

NANO = Decimal("1e-9")
_HOUR = 3600
_ROLLUP_KEY = ("hour", *t.ROLLUP_DIMENSIONS)


_USAGE_FIELDS = tuple(f for f in UsageRecord.__slots__ if f not in ("cost_usd", "saved_usd"))


_usage_fields = operator.attrgetter(*_USAGE_FIELDS)


def nanousd(amount: Decimal) -> int:
    return int((amount / NANO).to_integral_value())


def ledger_row(record: UsageRecord) -> tuple[Any, ...]:
    """The record as the ledger's columns (_LEDGER_COLUMNS), ready for the driver."""
    return (*_usage_fields(record), nanousd(record.cost_usd), nanousd(record.saved_usd))


def usage_from_row(row: Any) -> UsageRecord:
    values = {name: getattr(row, name) for name in _USAGE_FIELDS}
    return UsageRecord(cost_usd=Decimal(int(row.cost_nanousd)) * NANO,
                       saved_usd=Decimal(int(row.saved_nanousd)) * NANO, **values)


def rollups(records: Sequence[UsageRecord], ledger: Sequence[tuple[Any, ...]]
             ) -> list[tuple[Any, ...]]:
    """A batch summed per hour and dimensions (_ROLLUP_COLUMNS): one upsert per group, not per
    row. `ledger` is the batch as ledger_row made it (its amounts in nano-dollars).

    Sorted, so that concurrent writers on PostgreSQL lock the rows they share in the same order
    (no deadlock), and no group appears twice in one statement (which ON CONFLICT refuses).
    """
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for r, row in zip(records, ledger, strict=True):
        group = (int(r.ts // _HOUR) * _HOUR, r.key_id or "", r.key_name or "", r.team or "",
                 r.env or "", r.feature or "", r.route or "",
                 r.model_served or r.model_requested or "", r.provider or "", r.endpoint or "")
        checked = r.schema_valid is not None
        values = (1, 1 if r.status >= 400 else 0, r.prompt_tokens, r.completion_tokens,
                  r.cached_tokens, row[_COST], r.latency_ms, r.attempts - 1,
                  1 if r.fallback else 0, 1 if r.cache == "hit" else 0, row[_SAVED],
                  1 if checked else 0, 1 if checked and not r.schema_valid else 0,
                  1 if r.degraded else 0)
        total = sums.get(group)
        if total is None:
            sums[group] = list(values)
        else:
            for i, value in enumerate(values):
                total[i] += value
    # latency_ms_sum is a float column: asyncpg encodes a float8 from a float only.
    return [(*group, *total[:6], float(total[6]), *total[7:])
            for group, total in sorted(sums.items())]


class _Statement:
    """One statement in both drivers' parameter styles: sqlite3's `?`, asyncpg's `$n`."""

    def __init__(self, text: str, parameters: int):
        self.sqlite = text.format(values=", ".join("?" * parameters))
        self.postgresql = text.format(
            values=", ".join(f"${n}" for n in range(1, parameters + 1)))


def _columns(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


_LEDGER_COLUMNS = (*_USAGE_FIELDS, "cost_nanousd", "saved_nanousd")
_COST, _SAVED = len(_USAGE_FIELDS), len(_USAGE_FIELDS) + 1
_ROLLUP_COLUMNS = (*_ROLLUP_KEY, *t.ROLLUP_SUMS)
# Built from the schema's own names (constants, no input); every value is a bound parameter.
LEDGER_INSERT = _Statement(
    f'INSERT INTO "usage" ({_columns(_LEDGER_COLUMNS)}) VALUES ({{values}})',  # noqa: S608
    len(_LEDGER_COLUMNS))
# INSERT a rollup row, or add its sums to the row of the same hour and dimensions.
_ADD_SUMS = ", ".join(f'"{name}" = "usage_hourly"."{name}" + excluded."{name}"'
                      for name in t.ROLLUP_SUMS)
ROLLUP_UPSERT = _Statement(
    f'INSERT INTO "usage_hourly" ({_columns(_ROLLUP_COLUMNS)}) VALUES ({{values}}) '  # noqa: S608
    f"ON CONFLICT ({_columns(_ROLLUP_KEY)}) DO UPDATE SET {_ADD_SUMS}",
    len(_ROLLUP_COLUMNS))


def refused_values(exc: BaseException) -> bool:
    """The database refused the values themselves (SQLSTATE class 22 data exception or 23
    integrity violation, or a value the driver cannot encode), as opposed to being unreachable:
    a retry cannot help."""
    if isinstance(exc, DBAPIError):
        if isinstance(exc, (DataError, IntegrityError)):
            return True
        exc = exc.orig if isinstance(exc.orig, BaseException) else exc
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, OverflowError)):
        return True
    if type(exc).__module__.startswith("asyncpg") and isinstance(exc, ValueError):
        return True  # asyncpg's DataError: a value its codec refused (a str for an integer)
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return isinstance(code, str) and code[:2] in ("22", "23")
