"""Three gateway replicas on one PostgreSQL database and one Redis prefix (issue 5, item 7).

Real `keystead serve` processes, real PostgreSQL and Redis on loopback, the official `openai` SDK
(AsyncOpenAI, no retries) as the client. One set of three replicas serves the whole module; each
test has keys of its own. What each test measured is printed (`pytest -s` shows it):

- a budget that affords ~50 requests, hit by 200 at once across the replicas: accepted spend stays
  within it, and the ledger in PostgreSQL matches the accepted costs row for row;
- an RPM limit of 60 shared by the replicas: ~120 requests at once, 60 (+1 per elapsed second) pass;
- a revoke through replica 1 is refused by replicas 2 and 3 within a second;
- a replica SIGKILLed while it holds a concurrency slot and a budget reservation: the holds are
  reclaimed within the lease (`limits.lease_s`, 2 s here);
- streamed calls, one abandoned midway, are charged, and the budget counter equals the ledger;
- a route's circuit breaker opened by failures on replica 1 keeps replicas 2 and 3 off the
  failing deployment within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import openai
import pytest

from backends import backend_config
from e2e.harness import http, prepare_config, read_env_file, start_server, start_servers, stop
from keystead.state.counters import PoolReading
from keystead.state.redis_counters import RedisCounters

pytestmark = pytest.mark.e2e

LEASE_S = 2.0  # limits.lease_s of every replica: how long a dead replica's holds outlive it
CHUNK_DELAY_MS = 10  # between the mock's stream events, so a stream can be left midway
MODEL = "gpt-4o-mini"
NANO = Decimal("1e-9")


# --- the replicas ------------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    base_url: str
    proc: subprocess.Popen[Any]
    log: Path

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.v1, api_key=key, max_retries=0, timeout=60)


@dataclass
class Cluster:
    dir: Path
    config: Path
    database_url: str
    redis_url: str
    redis_prefix: str
    admin_token: str
    replicas: list[Replica]

    def admin(self, replica: Replica, method: str, path: str, body: Any = None,
              ) -> tuple[int, Any]:
        status, _, payload = http(method, replica.base_url + path, body=body,
                                  headers={"authorization": f"Bearer {self.admin_token}"})
        return status, (json.loads(payload) if payload else None)

    def create_key(self, name: str, **fields: Any) -> tuple[str, str]:
        """A key made through replica 1's admin API, usable on every replica; (id, key text)."""
        status, created = self.admin(self.replicas[0], "POST", "/admin/keys",
                                     {"name": name, **fields})
        assert status == 201, created
        for replica in self.replicas:
            wait_until_key_works(replica, created["key"])
        return created["id"], created["key"]

    def clients(self, key: str) -> list[openai.AsyncOpenAI]:
        return [replica.client(key) for replica in self.replicas]


def key_status(replica: Replica, key: str) -> int:
    """GET /v1/models with `key`: authenticates, but charges no limit and no budget."""
    return http("GET", replica.v1 + "/models", headers={"authorization": f"Bearer {key}"})[0]


def wait_until_key_works(replica: Replica, key: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (status := key_status(replica, key)) != 200:
        assert time.monotonic() < deadline, f"key never worked on {replica.name}: {status}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with backend_config("scaleout") as backend:
        directory = tmp_path_factory.mktemp("replicas")
        config = prepare_config(directory, overrides={
            **backend,
            "limits": {"lease_s": LEASE_S},
            "providers": {"mock": {"type": "mock", "models": [MODEL, "gpt-4o"],
                                   "mock": {"chunk_delay_ms": CHUNK_DELAY_MS}},
                          # a deployment that always fails: the breaker test's
                          "flaky": {"type": "mock", "models": ["flaky-model"],
                                    "mock": {"faults": "500*"}}},
            "routes": {"shared-breaker": {
                "strategy": "ordered",
                "retry": {"attempts": 2, "base_ms": 1, "cap_ms": 1},
                "deployments": [{"provider": "flaky", "model": MODEL},
                                {"provider": "mock", "model": MODEL}]}},
            "routing": {"breaker": {"failures": 3, "window_s": 60, "cooldown_s": 60}},
        })
        env = read_env_file(directory / ".env")
        logs = [directory / f"replica{n}.log" for n in (1, 2, 3)]
        # All three start at once on the empty database: migrations and the key pepper are
        # created by whichever gets there first, and the others must agree.
        started = start_servers(config, logs)
        replicas = [Replica(f"replica {n}", base_url, proc, log)
                    for n, ((proc, base_url), log) in enumerate(zip(started, logs, strict=True),
                                                                 start=1)]
        cluster = Cluster(directory, config, backend["database"]["url"], backend["redis"]["url"],
                          backend["redis"]["prefix"], env["KEYSTEAD_ADMIN_TOKEN"], replicas)
        try:
            for replica in replicas:
                status, body = cluster.admin(replica, "GET", "/admin/status")
                assert status == 200, body
                assert body["limits"]["backend"] == "redis", body
                assert body["limits"]["healthy"], body
            yield cluster
        finally:
            codes: list[int | str] = []
            for replica in replicas:  # every one is stopped, whatever another one did
                try:
                    codes.append(stop(replica.proc))
                except AssertionError as exc:
                    codes.append(str(exc))
        for replica, code in zip(replicas, codes, strict=True):
            log = replica.log.read_text(errors="replace")
            assert code == 0, f"{replica.name} exited {code} on SIGTERM:\n{log[-4000:]}"
            assert "usage ledger flushed" in log, log[-4000:]


# --- requests and readings ---------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    code: str | None = None
    cost: Decimal = Decimal(0)  # x-keystead-cost-usd of an accepted request
    request_id: str | None = None
    retry_after: str | None = None
    error: str | None = None


async def chat(client: openai.AsyncOpenAI, content: str = "hello", **fields: Any) -> Outcome:
    """One non-streamed chat completion; a refusal or any other API error is an Outcome too."""
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": content}], **fields)
    except openai.APIStatusError as exc:
        return Outcome(exc.status_code, exc.code, request_id=exc.response.headers.get(
            "x-request-id"), retry_after=exc.response.headers.get("retry-after"),
            error=exc.message)
    completion = raw.parse()
    assert completion.choices[0].message.content
    return Outcome(raw.status_code, cost=Decimal(raw.headers["x-keystead-cost-usd"]),
                   request_id=raw.headers["x-request-id"])


async def ledger(cluster: Cluster, key_id: str) -> list[asyncpg.Record]:
    """The key's chat completion rows in the ledger, read from PostgreSQL while the replicas run
    (the GET /v1/models calls that wait for a key to reach every replica have rows too)."""
    conn = await asyncpg.connect(cluster.database_url)
    try:
        return list(await conn.fetch(
            "SELECT request_id, status, error_code, cost_nanousd, prompt_tokens, "
            "completion_tokens, stream, usage_estimated FROM usage "
            "WHERE key_id = $1 AND endpoint = 'chat.completions' ORDER BY id", key_id))
    finally:
        await conn.close()


async def wait_for_ledger(cluster: Cluster, key_id: str, count: int, within_s: float = 30,
                          ) -> list[asyncpg.Record]:
    """Poll until the batched ledger writers of every replica wrote `count` rows for the key,
    then check that no more arrive (no double rows)."""
    deadline = time.monotonic() + within_s
    rows = await ledger(cluster, key_id)
    while len(rows) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        rows = await ledger(cluster, key_id)
    assert len(rows) == count, f"ledger has {len(rows)} rows for key {key_id}, expected {count}"
    await asyncio.sleep(0.5)  # ten flush intervals: a late duplicate would show now
    rows = await ledger(cluster, key_id)
    assert len(rows) == count, f"ledger grew to {len(rows)} rows for key {key_id}"
    return rows


async def pools(cluster: Cluster, prefix: str) -> dict[str, PoolReading]:
    """The counters' pools under `prefix`, read from Redis as the gateways see them."""
    counters = RedisCounters(cluster.redis_url, cluster.redis_prefix, timeout_s=5)
    try:
        return await counters.pools(prefix)
    finally:
        await counters.close()


async def budget_pool(cluster: Cluster, key_id: str) -> PoolReading:
    found = await pools(cluster, f"pool:budget:key:{key_id}:")
    assert len(found) <= 1, found
    return next(iter(found.values()), PoolReading(0, 0, 0))


async def close_all(clients: list[openai.AsyncOpenAI]) -> None:
    for client in clients:
        await client.close()


def run(coro: Any, timeout: float = 100) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


# --- 1. a budget under 200 concurrent requests -------------------------------------------------

# Output-heavy requests: the reservation (prompt bounded by the body's bytes + max_tokens) is then
# within a few percent of the real cost, so "affords 50" holds for reservations too.
BUDGET_TOKENS = 500
BUDGET_PROMPT = f"hello [[mock:tokens={BUDGET_TOKENS}]]"


def test_budget_is_never_overspent_by_200_concurrent_requests(cluster: Cluster) -> None:
    async def main() -> None:
        # One priced call on a key without limits learns what a request costs.
        _probe_id, probe = cluster.create_key("dev-replicas-probe")
        probe_client = cluster.replicas[0].client(probe)
        one = await chat(probe_client, BUDGET_PROMPT, max_tokens=BUDGET_TOKENS)
        await probe_client.close()
        assert one.status == 200 and one.cost > 0, one
        budget = one.cost * 50
        key_id, key = cluster.create_key("dev-replicas-budget", limits={
            "budget_usd": format(budget, "f"), "budget_period": "day"})

        clients = cluster.clients(key)
        started = time.monotonic()
        outcomes = await asyncio.gather(*(chat(clients[i % 3], BUDGET_PROMPT,
                                               max_tokens=BUDGET_TOKENS) for i in range(200)))
        elapsed = time.monotonic() - started
        await close_all(clients)

        accepted = [o for o in outcomes if o.status == 200]
        refused = [o for o in outcomes if o.status != 200]
        spent = sum((o.cost for o in accepted), Decimal(0))
        rows = await wait_for_ledger(cluster, key_id, 200)
        ledger_total = sum(row["cost_nanousd"] for row in rows) * NANO
        pool = await budget_pool(cluster, key_id)
        worst = _worst_cost(refused)
        print(f"\n[budget] cost/request ${one.cost} (reserved up to ${worst}), budget ${budget}; "
              f"200 requests in {elapsed:.2f}s: {len(accepted)} accepted (spend ${spent}), "
              f"{len(refused)} refused {sorted({(o.status, o.code) for o in refused})}; ledger "
              f"{len(rows)} rows, total ${ledger_total}; counter used ${pool.used * NANO}, "
              f"reserved {pool.reserved}")

        assert {(o.status, o.code) for o in refused} <= {(429, "budget_exceeded")}, \
            [o for o in refused if (o.status, o.code) != (429, "budget_exceeded")][:3]
        assert all(o.retry_after for o in refused)
        assert spent <= budget, f"spent ${spent} of a ${budget} budget"
        # Never more than the budget affords; never fewer than what fits in reservations at
        # once (a reservation that leaked would refuse requests the budget could pay for).
        assert len(accepted) <= 50
        assert len(accepted) >= int(budget / worst), (len(accepted), budget, worst)
        # The ledger: one row per request, none lost or doubled, and the accepted costs exactly.
        assert len({row["request_id"] for row in rows}) == 200
        assert {row["request_id"] for row in rows if row["status"] == 200} == \
            {o.request_id for o in accepted}
        assert ledger_total == spent
        assert all(row["cost_nanousd"] == 0 for row in rows if row["status"] != 200)
        # The shared counter agrees with the ledger, and nothing is left reserved.
        assert pool.used * NANO == spent and pool.reserved == 0 and pool.holders == 0, pool

    run(main())


def _worst_cost(refused: list[Outcome]) -> Decimal:
    """The reservation of one request, from a refusal ("... may cost up to $X", 6 decimals,
    rounded up here)."""
    for outcome in refused:
        found = re.search(r"may cost up to \$(\d+\.\d+)", outcome.error or "")
        if found:
            return Decimal(found.group(1)) + Decimal("0.000001")
    raise AssertionError(f"no budget refusal among {refused[:3]}")


# --- 2. an RPM limit shared by three replicas --------------------------------------------------


def test_rpm_limit_of_60_holds_across_three_replicas(cluster: Cluster) -> None:
    async def main() -> None:
        key_id, key = cluster.create_key("dev-replicas-rpm", limits={"rpm": 60})
        clients = cluster.clients(key)
        started = time.monotonic()
        outcomes = await asyncio.gather(*(chat(clients[i % 3], max_tokens=4)
                                          for i in range(120)))
        elapsed = time.monotonic() - started
        await close_all(clients)

        accepted = [o for o in outcomes if o.status == 200]
        refused = [o for o in outcomes if o.status != 200]
        per_replica = [sum(1 for i, o in enumerate(outcomes) if o.status == 200 and i % 3 == r)
                       for r in range(3)]
        print(f"\n[rpm] 120 requests in {elapsed:.2f}s: {len(accepted)} accepted "
              f"(per replica {per_replica}), {len(refused)} refused")
        assert {(o.status, o.code) for o in refused} <= {(429, "rate_limit_exceeded")}, \
            [o for o in refused if (o.status, o.code) != (429, "rate_limit_exceeded")][:3]
        assert all(o.retry_after for o in refused)
        # GCRA admits the burst of 60, then one per second: never 3 x 60, never fewer than 60.
        assert 60 <= len(accepted) <= 60 + elapsed, (len(accepted), elapsed)
        rows = await wait_for_ledger(cluster, key_id, 120)
        assert sum(1 for row in rows if row["status"] == 200) == len(accepted)

    run(main())


# --- 3. a revoke reaches every replica within a second -----------------------------------------


async def refused_after(replica: Replica, key: str, since: float) -> float:
    """Seconds from `since` until `replica` refuses `key` (polled every 50 ms)."""
    client = replica.client(key)
    try:
        while True:
            try:
                await client.models.list()
            except openai.AuthenticationError:
                return time.monotonic() - since
            assert time.monotonic() - since < 10, f"{replica.name} still accepts the key"
            await asyncio.sleep(0.05)
    finally:
        await client.close()


def test_revoke_through_replica_1_is_refused_on_replicas_2_and_3_within_a_second(
        cluster: Cluster) -> None:
    async def main() -> None:
        key_id, key = cluster.create_key("dev-replicas-revoke")
        one, two, three = cluster.replicas
        clients = [two.client(key), three.client(key)]
        outcome = await chat(clients[0], max_tokens=4)
        assert outcome.status == 200, outcome
        sent = time.monotonic()
        pollers = [asyncio.create_task(refused_after(r, key, sent)) for r in (two, three)]
        status, body = await asyncio.to_thread(
            cluster.admin, one, "POST", f"/admin/keys/{key_id}/revoke", {"reason": "e2e"})
        answered = time.monotonic() - sent
        assert status == 200 and body["status"] == "revoked", body
        assert key_status(one, key) == 401  # the replica that revoked refuses at once
        delays = await asyncio.gather(*pollers)
        print(f"\n[revoke] admin call took {answered * 1000:.0f} ms; refused on replica 2 after "
              f"{delays[0] * 1000:.0f} ms, on replica 3 after {delays[1] * 1000:.0f} ms from "
              f"sending the revoke ({(max(delays) - answered) * 1000:.0f} ms after its answer)")
        # Within a second of the revoke, counted from the moment it was sent (which includes the
        # admin call's own database writes), polled every 50 ms.
        assert max(delays) < 1.0, (delays, answered)
        refused = await chat(clients[1], max_tokens=4)
        await close_all(clients)
        assert (refused.status, refused.code) == (401, "key_revoked"), refused

    run(main())


# --- 4. a replica killed mid-request -----------------------------------------------------------


def test_holds_of_a_sigkilled_replica_are_reclaimed_within_the_lease(cluster: Cluster) -> None:
    # A fourth replica on the same database and Redis, the one that dies.
    victim_proc, victim_url = start_server(cluster.config, cluster.dir / "victim.log")
    victim = Replica("victim", victim_url, victim_proc, cluster.dir / "victim.log")
    try:
        run(_killed_mid_request(cluster, victim))
    finally:
        if victim_proc.poll() is None:
            victim_proc.kill()
        victim_proc.wait(timeout=10)


async def _killed_mid_request(cluster: Cluster, victim: Replica) -> None:
    key_id, key = cluster.create_key("dev-replicas-sigkill", limits={
        "max_parallel": 1, "budget_usd": "1.00", "budget_period": "day"})
    wait_until_key_works(victim, key)
    slot = f"pool:inflight:key:{key_id}"

    victim_client = victim.client(key)
    slow = asyncio.create_task(chat(victim_client, "[[mock:latency=60000]] hold the slot",
                                    max_tokens=16))
    deadline = time.monotonic() + 20
    while True:  # until the victim holds the slot and the reservation
        held = await pools(cluster, slot)
        budget = await budget_pool(cluster, key_id)
        if held.get(slot, PoolReading(0, 0, 0)).holders == 1 and budget.reserved > 0:
            break
        assert not slow.done(), slow.result()
        assert time.monotonic() < deadline, (held, budget)
        await asyncio.sleep(0.05)
    reserved_before = budget.reserved
    clients = cluster.clients(key)
    blocked = await chat(clients[0], max_tokens=4)
    assert (blocked.status, blocked.code) == (429, "concurrency_limit_exceeded"), blocked

    victim.proc.kill()  # SIGKILL: no settle, no lease renewal, no ledger flush
    victim.proc.wait(timeout=10)
    killed = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        outcome = await chat(clients[1], max_tokens=4)
        if outcome.status == 200:
            break
        assert (outcome.status, outcome.code) == (429, "concurrency_limit_exceeded"), outcome
        assert time.monotonic() - killed < LEASE_S + 10, "the dead replica's slot never came back"
        await asyncio.sleep(0.1)
    slot_back = time.monotonic() - killed
    budget = await budget_pool(cluster, key_id)
    while budget.reserved or budget.holders:  # the accepted request's own hold settles first
        assert time.monotonic() - killed < LEASE_S + 10, budget
        await asyncio.sleep(0.05)
        budget = await budget_pool(cluster, key_id)
    reserved_back = time.monotonic() - killed
    with contextlib.suppress(openai.APIConnectionError):
        lost = await asyncio.wait_for(slow, 30)
        raise AssertionError(f"the request to the killed replica answered: {lost}")
    await close_all([victim_client, *clients])
    print(f"\n[sigkill] lease {LEASE_S}s; victim held 1 slot and ${reserved_before * NANO} "
          f"reserved; slot usable on replica 2 after {slot_back:.2f}s ({attempts} attempts), "
          f"reservation back to 0 after {reserved_back:.2f}s; used ${budget.used * NANO}")
    assert slot_back <= LEASE_S + 1.0, slot_back
    assert reserved_back <= LEASE_S + 1.0, reserved_back
    assert budget.used * NANO == outcome.cost  # the dead request spent nothing


# --- 5. streams, one abandoned, are charged ----------------------------------------------------


async def stream(client: openai.AsyncOpenAI, content: str, leave_after: int | None = None,
                 ) -> tuple[str, int]:
    """A streamed chat; with `leave_after`, the client closes the connection after that many
    content chunks. Returns (request id, content chunks read)."""
    read = 0
    async with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=[{"role": "user", "content": content}], stream=True,
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = await response.parse()
        async for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                read += 1
                if leave_after is not None and read >= leave_after:
                    break
    return request_id, read


def test_streams_including_an_abandoned_one_are_charged(cluster: Cluster) -> None:
    async def main() -> None:
        key_id, key = cluster.create_key("dev-replicas-streams", limits={
            "budget_usd": "5.00", "budget_period": "day"})
        clients = cluster.clients(key)
        full = await asyncio.gather(*(stream(clients[i % 3], f"stream {i} [[mock:tokens=20]]")
                                      for i in range(6)))
        # 2000 tokens at 10 ms each would take 20 s: the client leaves after 5.
        left_id, left_read = await stream(clients[2], "abandon me [[mock:tokens=2000]]",
                                          leave_after=5)
        await close_all(clients)
        rows = await wait_for_ledger(cluster, key_id, 7)
        by_id = {row["request_id"]: row for row in rows}
        abandoned = by_id[left_id]
        total = sum(row["cost_nanousd"] for row in rows)
        deadline = time.monotonic() + 10
        pool = await budget_pool(cluster, key_id)
        while pool.used != total and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            pool = await budget_pool(cluster, key_id)
        print(f"\n[streams] 6 full streams: costs {[by_id[r]['cost_nanousd'] for r, _ in full]} "
              f"nano-USD; abandoned after {left_read} chunks: status {abandoned['status']}, "
              f"{abandoned['completion_tokens']} completion tokens (estimated: "
              f"{abandoned['usage_estimated']}), cost {abandoned['cost_nanousd']} nano-USD; "
              f"ledger total {total}, counter used {pool.used}, reserved {pool.reserved}")
        for request_id, read in full:
            row = by_id[request_id]
            assert row["status"] == 200 and row["stream"] and read == 20, (dict(row), read)
            assert row["completion_tokens"] == 20 and row["cost_nanousd"] > 0, dict(row)
        assert abandoned["status"] == 499 and abandoned["stream"], dict(abandoned)
        assert abandoned["error_code"] == "client_disconnected", dict(abandoned)
        assert abandoned["completion_tokens"] >= left_read, dict(abandoned)
        assert abandoned["cost_nanousd"] > 0, dict(abandoned)
        assert pool.used == total, (pool, total)
        assert pool.reserved == 0 and pool.holders == 0, pool

    run(main())


def test_an_incident_on_replica_1_stops_the_leaked_text_everywhere_within_a_second(
        cluster: Cluster) -> None:
    """`keystead incident` through one replica, given the leaked text itself: every replica
    refuses it within a second, the replacement works everywhere, the forensics saw the use."""

    async def main() -> None:
        _key_id, leaked = cluster.create_key("dev-replicas-incident")
        one, two, three = cluster.replicas
        used = two.client(leaked)
        assert (await chat(used, max_tokens=4)).status == 200
        await used.close()
        sent = time.monotonic()
        pollers = [asyncio.create_task(refused_after(r, leaked, sent)) for r in (two, three)]
        status, report = await asyncio.to_thread(
            cluster.admin, one, "POST", "/admin/incidents", {"key": leaked, "reason": "e2e"})
        answered = time.monotonic() - sent
        assert status == 200, report
        delays = await asyncio.gather(*pollers)
        print(f"\n[incident] command took {answered * 1000:.0f} ms (key stopped in the store "
              f"after {report['stop_ms']} ms); refused on replicas 2 and 3 after "
              f"{delays[0] * 1000:.0f} / {delays[1] * 1000:.0f} ms")
        assert max(delays) < 1.0, (delays, answered)
        assert report["action"] == "rotated" and report["forensics"]["requests"] >= 1
        for replica in (one, two, three):
            client = replica.client(report["new_key"])
            assert (await chat(client, max_tokens=4)).status == 200
            await client.close()
        refused = three.client(leaked)
        outcome = await chat(refused, max_tokens=4)
        await refused.close()
        assert (outcome.status, outcome.code) == (401, "key_rotated"), outcome

    run(main())


# --- a circuit breaker shared through Redis ------------------------------------------------------


def test_a_breaker_opened_on_replica_1_is_respected_by_replicas_2_and_3(
        cluster: Cluster) -> None:
    async def served_by(client: openai.AsyncOpenAI, text: str) -> tuple[str, str | None]:
        raw = await client.chat.completions.with_raw_response.create(
            model="shared-breaker", messages=[{"role": "user", "content": text}], max_tokens=4)
        return raw.headers["x-keystead-deployment"], raw.headers.get("x-keystead-attempts")

    async def main() -> None:
        _key_id, key = cluster.create_key("dev-replicas-breaker")
        one, two, three = cluster.replicas
        first = one.client(key)
        for i in range(3):  # flaky fails every time: 3 failures open its breaker
            deployment, attempts = await served_by(first, f"open it {i}")
            assert (deployment, attempts) == (f"mock/{MODEL}", "2")
        opened = time.monotonic()
        others = [two.client(key), three.client(key)]
        skipped_after: list[float] = []
        for client in others:
            while True:
                deployment, attempts = await served_by(client, "which one?")
                assert deployment == f"mock/{MODEL}"
                if attempts is None:  # straight to the healthy deployment: flaky was skipped
                    skipped_after.append(time.monotonic() - opened)
                    break
                assert time.monotonic() - opened < 5.0, "the breaker never reached this replica"
                await asyncio.sleep(0.05)
        status, routes = await asyncio.to_thread(cluster.admin, three, "GET", "/admin/routes")
        assert status == 200
        (route,) = [r for r in routes if r["route"] == "shared-breaker"]
        states = {d["deployment"]: d["breaker"] for d in route["deployments"]}
        print(f"\n[breaker] opened on replica 1; replicas 2 and 3 skip it after "
              f"{skipped_after[0] * 1000:.0f} and {skipped_after[1] * 1000:.0f} ms")
        await close_all([first, *others])
        assert states == {f"flaky/{MODEL}": "open", f"mock/{MODEL}": "closed"}
        # Each replica re-reads the breakers every second; the margin is for a loaded CI box.
        assert max(skipped_after) < 2.5

    run(main())
