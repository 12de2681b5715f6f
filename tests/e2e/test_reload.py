"""Reloading the config of running gateways under traffic (issue 12, item 4).

Real `keystead serve` processes, the official `openai` SDK as the client (AsyncOpenAI, no
retries), a steady stream of chat completions (some streamed, each held ~50 ms by the mock so
that some are always in flight) while the config files change and reloads are asked for. Every
test asserts: no request failed, and the ledger has exactly one row per answered request.

- a single process answers SIGHUP with a reload, over and over, and lives on (before: killed);
- two replicas on PostgreSQL and Redis, each with a config file of its own (as on two machines):
  replica 1 gets SIGHUP and reloads alone; `keystead --server <replica 1> reload` then makes
  both re-read their files and prints what each did; a bad file is refused by replica 2;
- `--workers 2`: SIGHUP to the parent reloads both workers in place (same processes), the
  embedded `keystead reload` reaches them through the store, and SIGHUP to every process at
  once (a closed terminal) stops none of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import openai
import pytest
import yaml

from backends import backend_config
from e2e.harness import (
    http,
    ledger_rows,
    prepare_config,
    read_env_file,
    run_cli,
    start_server,
    stop,
    wait_ready,
)

pytestmark = pytest.mark.e2e

MODEL = "gpt-4o-mini"
HOLD = "[[mock:latency=50]]"  # each request waits 50 ms at the mock: always some in flight


# --- traffic -----------------------------------------------------------------------------------


@dataclass
class Traffic:
    """Chat completions in `lanes` loops per client until stopped; every outcome is kept."""

    clients: list[openai.AsyncOpenAI]
    lanes: int = 3
    answered: list[str] = field(default_factory=list)  # request ids of 200 answers
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _lanes: asyncio.Future[Any] | None = None

    def start(self) -> None:
        self._lanes = asyncio.gather(
            *(self._lane(client, n) for client in self.clients for n in range(self.lanes)))

    async def stop(self) -> None:
        self._stop.set()
        assert self._lanes is not None
        await self._lanes
        for client in self.clients:
            await client.close()

    async def _lane(self, client: openai.AsyncOpenAI, lane: int) -> None:
        sent = 0
        while not self._stop.is_set():
            sent += 1
            try:
                if (sent + lane) % 3 == 0:
                    await self._stream(client)
                else:
                    raw = await client.chat.completions.with_raw_response.create(
                        model=MODEL, messages=[{"role": "user", "content": f"hi {HOLD}"}])
                    assert raw.parse().choices[0].message.content
                    self.answered.append(raw.headers["x-request-id"])
            except Exception as exc:  # any failure at all is what these tests look for
                self.failures.append(f"{type(exc).__name__}: {exc}")

    async def _stream(self, client: openai.AsyncOpenAI) -> None:
        async with client.chat.completions.with_streaming_response.create(
                model=MODEL, messages=[{"role": "user", "content": f"stream {HOLD}"}],
                stream=True) as response:
            request_id = response.headers["x-request-id"]
            text = ""
            async for chunk in await response.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
        assert text
        self.answered.append(request_id)


def client(base_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0,
                              timeout=30)


async def under_traffic(clients: list[openai.AsyncOpenAI],
                        steps: Callable[[], Awaitable[None]]) -> Traffic:
    traffic = Traffic(clients)
    traffic.start()
    try:
        await asyncio.sleep(0.5)  # traffic flowing before the first step
        await steps()
        await asyncio.sleep(0.5)  # and after the last
    finally:
        await traffic.stop()
    assert not traffic.failures, traffic.failures[:5]
    assert len(traffic.answered) == len(set(traffic.answered))
    return traffic


# --- config files and gateways -----------------------------------------------------------------


def edit(config: Path, change: Callable[[dict[str, Any]], None]) -> None:
    raw = yaml.safe_load(config.read_text())
    change(raw)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))


def add_route(name: str) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        raw.setdefault("routes", {})[name] = {"deployments": [{"provider": "mock",
                                                               "model": MODEL}]}
    return change


def admin(base_url: str, token: str, method: str, path: str, body: Any = None,
          ) -> tuple[int, Any]:
    status, _, payload = http(method, base_url + path, body=body,
                              headers={"authorization": f"Bearer {token}"})
    return status, (json.loads(payload) if payload else None)


def create_key(base_url: str, token: str, name: str) -> tuple[str, str]:
    status, created = admin(base_url, token, "POST", "/admin/keys", {"name": name})
    assert status == 201, created
    return created["id"], created["key"]


def model_status(base_url: str, key: str, model: str) -> int:
    return http("POST", base_url + "/v1/chat/completions",
                body={"model": model, "messages": [{"role": "user", "content": "probe"}]},
                headers={"authorization": f"Bearer {key}"})[0]


async def serves(base_url: str, key: str, model: str, *, times: int = 1,
                 within_s: float = 15) -> None:
    """Wait until `model` is answered 200 `times` times in a row."""
    deadline = time.monotonic() + within_s
    streak = 0
    while streak < times:
        status = await asyncio.to_thread(model_status, base_url, key, model)
        streak = streak + 1 if status == 200 else 0
        assert time.monotonic() < deadline, f"{model} never served by {base_url}: {status}"
        if status != 200:
            await asyncio.sleep(0.05)


def reload_events(base_url: str, token: str) -> list[dict[str, Any]]:
    status, events = admin(base_url, token, "GET", "/admin/events?kind=config.reload&limit=1000")
    assert status == 200, events
    return list(events)


def stop_all(procs: list[tuple[subprocess.Popen[Any], Path]]) -> None:
    codes = []
    for proc, _log in procs:
        try:
            codes.append(stop(proc))
        except AssertionError as exc:
            codes.append(str(exc))
    for (_proc, log), code in zip(procs, codes, strict=True):
        text = log.read_text(errors="replace")
        assert code == 0, f"{log.name}: exited {code}:\n{text[-4000:]}"
        assert "usage ledger flushed" in text, text[-4000:]


def sqlite_rows(db: Path, key_id: str, count: int, within_s: float = 15) -> int:
    """The key's chat rows, once the batched writers wrote `count` of them (and no more)."""
    deadline = time.monotonic() + within_s
    rows = ledger_rows(db, "key_id = ? AND endpoint = 'chat.completions'", (key_id,))
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = ledger_rows(db, "key_id = ? AND endpoint = 'chat.completions'", (key_id,))
    return len(rows)


# --- 1. one process ------------------------------------------------------------------------------


def test_sighup_reloads_one_process_under_traffic_and_loses_no_record(tmp_path: Path) -> None:
    config = prepare_config(tmp_path)
    token = read_env_file(tmp_path / ".env")["KEYSTEAD_ADMIN_TOKEN"]
    log = tmp_path / "server.log"
    proc, base_url = start_server(config, log)
    key_id, key = create_key(base_url, token, "dev-reload-traffic")
    _, probe = create_key(base_url, token, "dev-reload-probe")

    async def steps() -> None:
        for n in range(3):  # and again: a reload is not a one-off
            await asyncio.to_thread(edit, config, add_route(f"sighup-route-{n}"))
            proc.send_signal(signal.SIGHUP)
            await serves(base_url, probe, f"sighup-route-{n}")
            assert proc.poll() is None, "SIGHUP ended the gateway"
            await asyncio.sleep(0.3)  # traffic between the reloads too

    try:
        traffic = asyncio.run(under_traffic([client(base_url, key)], steps))
        assert sqlite_rows(tmp_path / "keystead.db", key_id, len(traffic.answered)) \
            == len(traffic.answered)
        triggers = [e["detail"]["trigger"] for e in reload_events(base_url, token)]
        assert triggers == ["sighup"] * 3
        print(f"\n[reload] one process, 3 SIGHUPs: {len(traffic.answered)} requests answered, "
              "0 failed, as many ledger rows")
    finally:
        stop_all([(proc, log)])
    assert "config reloaded (sighup)" in log.read_text()


# --- 2. two replicas on PostgreSQL and Redis ---------------------------------------------------


def test_two_replicas_reload_under_traffic_without_a_failed_request_or_a_lost_row(
        tmp_path: Path) -> None:
    with backend_config("scaleout") as backend:
        first_dir, second_dir = tmp_path / "one", tmp_path / "two"
        first_dir.mkdir()
        first = prepare_config(first_dir, overrides=backend)
        shutil.copytree(first_dir, second_dir, dirs_exist_ok=True)  # same secrets, own file
        second = second_dir / "keystead.yaml"
        token = read_env_file(first_dir / ".env")["KEYSTEAD_ADMIN_TOKEN"]
        logs = [first_dir / "replica1.log", second_dir / "replica2.log"]
        started = [start_server(cfg, log, ready=False)
                   for cfg, log in ((first, logs[0]), (second, logs[1]))]
        procs = [(proc, log) for (proc, _), log in zip(started, logs, strict=True)]
        try:
            for (proc, base_url), log in zip(started, logs, strict=True):
                wait_ready(base_url, proc, log, timeout=60)
            (one, url_one), (_two, url_two) = started
            run_two_replicas(backend["database"]["url"], token, one, url_one, url_two, first,
                             second)
        finally:
            stop_all(procs)


def run_two_replicas(database_url: str, token: str, one: subprocess.Popen[Any], url_one: str,
                     url_two: str, first: Path, second: Path) -> None:
    key_id, key = create_key(url_one, token, "dev-replicas-reload")
    _, probe = create_key(url_one, token, "dev-replicas-probe")
    for url in (url_one, url_two):  # the keys reach replica 2 through the store
        deadline = time.monotonic() + 10
        while model_status(url, probe, MODEL) != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    printed: list[str] = []

    async def steps() -> None:
        # Replica 1 gets SIGHUP: it re-reads its own file; replica 2 is not asked.
        await asyncio.to_thread(edit, first, add_route("route-one"))
        one.send_signal(signal.SIGHUP)
        await serves(url_one, probe, "route-one")
        assert await asyncio.to_thread(model_status, url_two, probe, "route-one") == 404

        # Replica 2's file changes; asked through replica 1's admin API, both re-read theirs.
        await asyncio.to_thread(edit, second, add_route("route-two"))
        result = await asyncio.to_thread(
            run_cli, "--server", url_one, "--admin-token", token, "reload", "--wait", "3s")
        printed.append(result.stdout)
        await serves(url_two, probe, "route-two")
        assert await asyncio.to_thread(model_status, url_one, probe, "route-two") == 404

        # A bad file on replica 2 is refused there, with what to fix; it keeps serving.
        good = await asyncio.to_thread(second.read_text)
        await asyncio.to_thread(second.write_text, good + "limits:\n  replicaz: 2\n")
        status, body = await asyncio.to_thread(admin, url_two, token, "POST", "/admin/reload")
        assert status == 400, body
        assert body["error"]["code"] == "config_invalid"
        assert "limits.replicaz: unknown setting" in body["error"]["message"]
        await serves(url_two, probe, "route-two")
        await asyncio.to_thread(second.write_text, good)

    traffic = asyncio.run(under_traffic([client(url_one, key), client(url_two, key)], steps))

    # The CLI printed one line per replica: replica 1 asked by the admin API, replica 2 by the
    # notice; both with the digest of their own file.
    output = printed[0]
    assert output.startswith("other gateways: asked at once (Redis notice)"), output
    lines = output.splitlines()[1:]
    assert len(lines) == 2, output
    assert "(admin-api): file" in lines[0] and "nothing to apply" in lines[0]
    assert "(notice): file" in lines[1] and "applied routes.route-two" in lines[1]
    events = reload_events(url_one, token)
    assert sorted(e["detail"]["trigger"] for e in events) \
        == ["admin-api", "admin-api", "notice", "sighup"]
    assert [e["detail"]["ok"] for e in events if e["detail"]["trigger"] == "admin-api"] \
        == [False, True]  # newest first: replica 2's refusal

    rows = asyncio.run(pg_rows(database_url, key_id, len(traffic.answered)))
    assert rows == len(traffic.answered)
    print(f"\n[reload] two replicas, SIGHUP + keystead reload + a refused file: "
          f"{len(traffic.answered)} requests answered, 0 failed, {rows} ledger rows")


async def pg_rows(database_url: str, key_id: str, count: int, within_s: float = 15) -> int:
    deadline = time.monotonic() + within_s
    conn = await asyncpg.connect(database_url)
    try:
        while True:
            rows = await conn.fetchval(
                "SELECT count(*) FROM usage WHERE key_id = $1 "
                "AND endpoint = 'chat.completions'", key_id)
            if rows >= count or time.monotonic() > deadline:
                await asyncio.sleep(0.3)  # a late duplicate would show now
                return int(await conn.fetchval(
                    "SELECT count(*) FROM usage WHERE key_id = $1 "
                    "AND endpoint = 'chat.completions'", key_id))
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


# --- 3. --workers 2 ------------------------------------------------------------------------------


def workers_of(parent: int) -> set[int]:
    """uvicorn's worker processes under `parent` (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {int(pid) for pid in children
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}


def test_sighup_with_two_workers_reloads_both_in_place(tmp_path: Path) -> None:
    config = prepare_config(tmp_path)
    token = read_env_file(tmp_path / ".env")["KEYSTEAD_ADMIN_TOKEN"]
    # No store yet: `serve --workers 2` migrates it before the workers start (two workers
    # creating a fresh SQLite store at once raced its migrations).
    assert not (tmp_path / "keystead.db").exists()
    log = tmp_path / "server.log"
    proc, base_url = start_server(config, log, "--workers", "2")
    key_id, key = create_key(base_url, token, "dev-workers-traffic")
    _, probe = create_key(base_url, token, "dev-workers-probe")
    # A key made through one worker reaches the other through the store's poll (a second at
    # most): traffic starts once both workers answer the probe key, made after it (the
    # traffic key's own ledger rows must be the traffic's alone).
    asyncio.run(serves(base_url, probe, "gpt-4o-mini", times=10))
    before = workers_of(proc.pid)
    assert len(before) == 2
    printed: list[str] = []

    async def steps() -> None:
        # SIGHUP to the parent: each worker re-reads the file (ten answers in a row from the
        # new route: both workers have it, whichever takes the connection).
        await asyncio.to_thread(edit, config, add_route("workers-route"))
        proc.send_signal(signal.SIGHUP)
        await serves(base_url, probe, "workers-route", times=10)
        # The embedded CLI reaches both through the store's change counter.
        await asyncio.to_thread(edit, config, add_route("embedded-route"))
        result = await asyncio.to_thread(run_cli, "reload", "--wait", "3s", config=config,
                                         cwd=tmp_path)
        printed.append(result.stdout)
        await serves(base_url, probe, "embedded-route", times=10)
        # A closed terminal: SIGHUP to every process of the group at once (each worker gets
        # it twice: directly and passed on). Nobody stops; the file is simply read again.
        for pid in (proc.pid, *before):
            os.kill(pid, signal.SIGHUP)
        await asyncio.sleep(1.0)
        assert proc.poll() is None and workers_of(proc.pid) == before

    try:
        traffic = asyncio.run(under_traffic([client(base_url, key)], steps))
        assert workers_of(proc.pid) == before  # reloaded in place, not replaced
        events = reload_events(base_url, token)
        by_trigger: dict[str, set[str]] = {}
        for event in events:
            by_trigger.setdefault(event["detail"]["trigger"], set()).add(
                event["detail"]["replica"])
        pids = {f":{pid}" for pid in before}
        assert {r[r.rindex(":"):] for r in by_trigger["sighup"]} == pids, events
        assert all(e["detail"]["ok"] for e in events), events
        assert {r[r.rindex(":"):] for r in by_trigger["poll"] | by_trigger.get("notice", set())} \
            == pids, events
        lines = printed[0].splitlines()
        assert lines[0] == "other gateways: asked through the store (they re-read within a " \
                           "second)", printed[0]
        assert len(lines) == 3 and all("applied routes.embedded-route" in line
                                       for line in lines[1:]), printed[0]
        rows = sqlite_rows(tmp_path / "keystead.db", key_id, len(traffic.answered))
        assert rows == len(traffic.answered)
        print(f"\n[reload] --workers 2, SIGHUP + embedded keystead reload: "
              f"{len(traffic.answered)} requests answered, 0 failed, {rows} ledger rows")
    finally:
        stop_all([(proc, log)])
