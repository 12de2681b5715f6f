"""How far a budget is overspent when Redis loses its data under load.

Three `keystead serve` replicas on one fresh PostgreSQL database and a private, non-persistent
`redis-server` (started here on a free port, never the shared one) serve concurrent chat
completions for one key with a daily budget. While the budget is being spent, Redis loses
everything twice: a `FLUSHDB` once about a third of the budget is spent, and a restart without
persistence (`SHUTDOWN NOSAVE`, then the same port again) at about two thirds. The load goes on
until the budget refuses everything; then the ledger (PostgreSQL, the record of truth) says
what was spent.

    python -m bench.budget_loss [--concurrency 48] [--latency-ms 300] [--requests 300]
                                [--src PATH]    # run the gateways from another checkout's src

Prints the budget, the spend the ledger holds, and the overspend in percent. Needs PostgreSQL
(`$KEYSTEAD_BENCH_PG_URL`, default postgres@127.0.0.1:5432, trust auth) and `redis-server`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis
import yaml

from bench.procs import free_port, wait_http

PG_URL = os.environ.get("KEYSTEAD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MODEL = "gpt-4o-mini"
TOKENS = 200  # completion tokens of every answer (and its max_tokens): the worst case is real
NANO = Decimal("1e-9")


class PrivateRedis:
    """A redis-server of our own, without persistence, that can be restarted on its port."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                    client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def flush(self) -> None:
        with self.client() as client:
            client.flushdb()

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(redis.RedisError), self.client() as client:
            client.shutdown(nosave=True)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


async def _pg(statement: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _db_url(name: str) -> str:
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{name}"


@dataclass
class Gateways:
    dir: Path
    urls: list[str]
    procs: list[subprocess.Popen[bytes]]
    admin_token: str
    logs: list[Path] = field(default_factory=list)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.urls[0] + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"authorization": f"Bearer {self.admin_token}",
                     "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_gateways(src: Path, directory: Path, database_url: str, redis_url: str) -> Gateways:
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1"}
    for name in ("KEYSTEAD_CONFIG", "KEYSTEAD_DATABASE_URL", "KEYSTEAD_REDIS_URL"):
        env.pop(name, None)
    subprocess.run([sys.executable, "-m", "keystead", "init", str(directory)], env=env,
                   check=True, capture_output=True)
    config = directory / "keystead.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["providers"] = {"mock": {"type": "mock", "models": [MODEL]}}
    raw["database"] = {"url": database_url}
    raw["redis"] = {"url": redis_url, "prefix": f"kbench:{secrets.token_hex(4)}:"}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    token = next(line.split("=", 1)[1].strip()
                 for line in (directory / ".env").read_text().splitlines()
                 if line.startswith("KEYSTEAD_ADMIN_TOKEN="))
    ports = [free_port() for _ in range(3)]
    procs, logs = [], []
    for n, port in enumerate(ports, 1):
        log = directory / f"replica{n}.log"
        logs.append(log)
        with log.open("wb") as sink:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "keystead", "serve", "--port", str(port)], env=env,
                cwd=directory, stdout=sink, stderr=subprocess.STDOUT))
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    for url in urls:
        wait_http(url + "/readyz", timeout=60)
    return Gateways(directory, urls, procs, token, logs)


@dataclass
class Load:
    budget: Decimal
    spent: Decimal = Decimal(0)  # what accepted answers said they cost
    statuses: Counter[str] = field(default_factory=Counter)
    refused_since: float | None = None  # when every answer became a budget refusal
    stop: bool = False
    mark: Decimal = Decimal(0)
    passed: asyncio.Event = field(default_factory=asyncio.Event)

    async def spending(self, mark: Decimal) -> None:
        """Return once the accepted answers cost `mark`."""
        self.mark = mark
        self.passed.clear()
        if self.spent < mark:
            await self.passed.wait()


async def worker(session: aiohttp.ClientSession, urls: list[str], key: str, body: bytes,
                 load: Load, index: int) -> None:
    n = index
    while not load.stop:
        url = urls[n % len(urls)] + "/v1/chat/completions"
        n += 1
        try:
            async with session.post(url, data=body, headers={
                    "authorization": f"Bearer {key}",
                    "content-type": "application/json"}) as response:
                payload = await response.read()
                if response.status == 200:
                    load.spent += Decimal(response.headers["x-keystead-cost-usd"])
                    load.statuses["200"] += 1
                    load.refused_since = None
                    if load.spent >= load.mark:
                        load.passed.set()
                    continue
                code = json.loads(payload)["error"]["code"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            code = type(exc).__name__
        load.statuses[code] += 1
        if code == "budget_exceeded" and load.refused_since is None:
            load.refused_since = time.monotonic()
        await asyncio.sleep(0.05)  # refusals are fast: do not spin


async def ledger_spend(database_url: str, key_id: str) -> tuple[Decimal, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT coalesce(sum(cost_nanousd), 0) AS spent, count(*) AS rows FROM usage "
            "WHERE key_id = $1 AND endpoint = 'chat.completions'", key_id)
    finally:
        await conn.close()
    assert row is not None
    return Decimal(int(row["spent"])) * NANO, int(row["rows"])


async def run(args: argparse.Namespace, gateways: Gateways, private: PrivateRedis,
              database_url: str) -> dict[str, Any]:
    prompt = f"[[mock:latency={args.latency_ms}]][[mock:tokens={TOKENS}]] hello"
    body = json.dumps({"model": MODEL, "max_tokens": TOKENS,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    probe = gateways.admin("POST", "/admin/keys", {"name": "dev-budget-probe"})
    budget_key = gateways.admin("POST", "/admin/keys", {"name": "dev-budget-loss"})
    await asyncio.sleep(1.5)  # every replica reloads its key table within a second
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.post(gateways.urls[0] + "/v1/chat/completions", data=body, headers={
                "authorization": f"Bearer {probe['key']}",
                "content-type": "application/json"}) as response:
            assert response.status == 200, await response.text()
            cost = Decimal(response.headers["x-keystead-cost-usd"])
        budget = cost * args.requests
        gateways.admin("PATCH", f"/admin/keys/{budget_key['id']}", {
            "limits": {"budget_usd": format(budget, "f"), "budget_period": "day"}})
        await asyncio.sleep(1.5)
        load = Load(budget)
        tasks = [asyncio.create_task(worker(session, gateways.urls, budget_key["key"], body,
                                            load, i)) for i in range(args.concurrency)]
        started = time.monotonic()
        events: list[str] = []
        try:
            await load.spending(budget / 3)
            private.flush()
            events.append(f"FLUSHDB at ${load.spent} spent ({time.monotonic() - started:.1f}s)")
            await load.spending(budget * 2 / 3)
            private.stop()
            private.start()
            events.append(f"restart at ${load.spent} spent ({time.monotonic() - started:.1f}s)")
            # Until the budget refuses every request for two seconds, or 60 s have passed.
            while time.monotonic() - started < 60:
                if load.refused_since is not None and time.monotonic() - load.refused_since > 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            load.stop = True
            await asyncio.gather(*tasks)
    await asyncio.sleep(3)  # the ledger writers flush every second
    spent, rows = await ledger_spend(database_url, budget_key["id"])
    return {"budget_usd": budget, "cost_per_request_usd": cost, "ledger_spend_usd": spent,
            "client_spend_usd": load.spent, "overspend_pct": (spent - budget) / budget * 100,
            "ledger_rows": rows, "answers": dict(load.statuses), "events": events,
            "elapsed_s": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--requests", type=int, default=300,
                        help="how many requests the budget affords")
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src",
                        help="the keystead source tree the gateways run from")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed")
    root = Path(tempfile.mkdtemp(prefix="keystead-budget-loss-"))
    name = f"kbench_{secrets.token_hex(6)}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    private = PrivateRedis(root)
    private.start()
    gateways = None
    try:
        gateways = start_gateways(args.src.resolve(), root, _db_url(name), private.url)
        result = asyncio.run(run(args, gateways, private, _db_url(name)))
    finally:
        if gateways is not None:
            gateways.stop()
        private.stop()
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    for event in result["events"]:
        print(event)
    print(f"answers: {result['answers']} in {result['elapsed_s']}s")
    print(f"budget ${result['budget_usd']} (${result['cost_per_request_usd']} a request, "
          f"{args.requests} requests), concurrency {args.concurrency}, "
          f"latency {args.latency_ms} ms")
    print(f"spend (ledger) ${result['ledger_spend_usd']} over {result['ledger_rows']} rows; "
          f"overspend {result['overspend_pct']:.1f}%")


if __name__ == "__main__":
    main()
