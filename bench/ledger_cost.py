"""What the usage ledger costs per row: `SQLStore.insert_usage` in batches, SQLite and PostgreSQL.

A batch is what the usage writer flushes at once (500 rows by default); each row goes to the
ledger and is summed into the hourly rollups in the same transaction. The rows are realistic:
30 keys in 3 teams, 4 models, 2 routes, one error in 20, over two hours (so each batch upserts
a few hundred rollup groups, as a busy gateway's does).

    python -m bench.ledger_cost [--batches 40] [--batch 500] [--pg URL | --no-pg]

PostgreSQL: a throwaway database on the test server (KEYSTEAD_TEST_PG_URL, as the tests use),
dropped afterwards. Prints rows per second (median of the batches' rates) for each backend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from keystead.state.records import UsageRecord
from keystead.state.sql_store import SQLStore

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MODELS = ("gpt-4o-mini", "gpt-4.1", "claude-sonnet-4", "text-embedding-3-small")


def _records(count: int, start: int) -> list[UsageRecord]:
    now = time.time()
    rows = []
    for i in range(start, start + count):
        key = i % 30
        rows.append(UsageRecord(
            request_id=f"req-{i:012d}", ts=now - (i % 7200), endpoint="chat.completions",
            status=500 if i % 20 == 0 else 200, key_id=f"k{key:015d}", key_name=f"key-{key}",
            team=f"team-{key % 3}", env="prod", feature=f"feature-{i % 5}",
            route="default" if i % 2 else "cheap", model_requested=MODELS[i % 4],
            model_served=MODELS[i % 4], provider="openai", prompt_tokens=120 + i % 50,
            completion_tokens=40 + i % 30, cost_usd=Decimal("0.000123456"), latency_ms=210.5,
            ttft_ms=80.0, stream=bool(i % 3), client_ip="10.0.0.1", user_agent="bench/1",
            attempts=1 + (i % 10 == 0), fallback=i % 10 == 0,
            cache="hit" if i % 8 == 0 else None, saved_usd=Decimal("0.00001"),
            schema_valid=None if i % 4 else True))
    return rows


async def _measure(url: str, batches: int, batch: int) -> tuple[float, float]:
    """Rows per second (median of the batches) and the gateway process's own CPU microseconds
    per row (steadier than wall time on a busy machine; for SQLite it includes the database's
    work, which runs in the process)."""
    store = SQLStore(url)
    await store.open()
    try:
        await store.insert_usage(_records(batch, 0))  # warm: connections, prepared statements
        prepared = [_records(batch, (n + 1) * batch) for n in range(batches)]
        rates = []
        cpu = time.process_time()
        for records in prepared:
            started = time.perf_counter()
            await store.insert_usage(records)
            rates.append(batch / (time.perf_counter() - started))
        cpu = time.process_time() - cpu
        return statistics.median(rates), cpu / (batches * batch) * 1e6
    finally:
        await store.close()


async def _autocommit(url: str, statement: str) -> None:
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1),
                                 poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


async def _pg(admin: str, batches: int, batch: int) -> tuple[float, float]:
    name = f"keystead_bench_{secrets.token_hex(4)}"
    await _autocommit(admin, f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        return await _measure(url, batches, batch)
    finally:
        await _autocommit(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--pg", default=os.environ.get("KEYSTEAD_TEST_PG_URL", DEFAULT_PG))
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'ledger.db'}"
        figures = {"sqlite": asyncio.run(_measure(url, args.batches, args.batch))}
    if not args.no_pg:
        figures["postgresql"] = asyncio.run(_pg(args.pg, args.batches, args.batch))
    for backend, (rate, cpu_us) in figures.items():
        print(f"{backend:<11} {rate:9.0f} rows/s  {cpu_us:6.1f} us CPU/row  (batches of "
              f"{args.batch}, median of {args.batches}; records built outside the timing)")


if __name__ == "__main__":
    main()
