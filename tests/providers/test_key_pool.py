"""The key pool on its own: round-robin over the active keys, a refused key out (reported once),
a rate-limited key cooling down, every key out still answering, and the provider's send loop
against a fake transport that refuses chosen keys."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from keystead.providers.base import Capabilities, Endpoint
from keystead.providers.key_pool import (
    ACTIVE,
    COOLING,
    DISABLED,
    MAX_COOL_S,
    KeyChange,
    KeyPool,
    fingerprint,
    normalize_label,
    retry_after_s,
)
from keystead.providers.openai_compatible import OpenAICompatibleProvider
from keystead.providers.transport import UpstreamResponse

A, B, C = "sk-key-a-0123456789abcdef", "sk-key-b-0123456789abcdef", "sk-key-c-0123456789abcdef"


def pool_of(*secrets: str) -> tuple[KeyPool, list[KeyChange]]:
    changes: list[KeyChange] = []
    return KeyPool.of("up", list(secrets), report=changes.append), changes


def picks(pool: KeyPool, n: int) -> list[str]:
    picked = [pool.pick() for _ in range(n)]
    return [key.label if key else "-" for key in picked]


def test_labels_and_fingerprints_never_show_the_key() -> None:
    pool, _ = pool_of(A, B)
    assert [k.label for k in pool.keys] == ["#1", "#2"]
    assert pool.keys[0].fingerprint == hashlib.sha256(A.encode()).hexdigest()[:12]
    assert fingerprint(A) != fingerprint(B)
    assert A not in repr(pool) and B not in repr(pool.keys[1])
    assert A not in str(pool.view())
    assert pool.get("2") is pool.get("#2") is pool.get(" #2 ") is pool.keys[1]
    assert pool.get("3") is None
    assert normalize_label("7") == "#7"


def test_round_robin_spreads_over_the_active_keys() -> None:
    pool, _ = pool_of(A, B, C)
    assert picks(pool, 6) == ["#1", "#2", "#3", "#1", "#2", "#3"]
    one, _ = pool_of(A)
    assert picks(one, 3) == ["#1", "#1", "#1"]
    empty, _ = pool_of()
    assert empty.pick() is None and empty.first is None and len(empty) == 0


def test_a_refused_key_is_taken_out_reported_once_and_the_next_one_offered(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "keystead.providers")
    pool, changes = pool_of(A, B, C)
    second = pool.keys[1]
    following = pool.refused(second, 401)
    assert following is not None and following is not second
    assert second.state == DISABLED and second.reason == "HTTP 401"
    # Requests that were under way with the key see the 401 too: one report, a key each.
    assert pool.refused(second, 401) is not None
    assert [(c.label, c.state, c.status, c.fingerprint) for c in changes] == [
        ("#2", DISABLED, 401, second.fingerprint)]
    assert set(picks(pool, 4)) == {"#1", "#3"}
    (line,) = [r.getMessage() for r in caplog.records]
    assert "provider up: key #2" in line and second.fingerprint in line and "2 of 3" in line
    assert B not in caplog.text


def test_every_key_out_still_answers_and_a_probe_that_works_brings_one_back() -> None:
    pool, changes = pool_of(A, B)
    first, second = pool.keys
    assert pool.refused(first, 403) is second
    assert pool.refused(second, 401) is None  # nothing usable left
    assert pool.pick() in (first, second)  # the provider answers (401) as before
    assert {k.state for k in pool.keys} == {DISABLED}
    pool.answered(first, 200)  # out after a 403 (may depend on the model): stays out
    assert first.state == DISABLED
    pool.answered(second, 200)  # out after a 401: it works again
    assert second.state == ACTIVE and second.reason == "answered again (HTTP 200)"
    assert picks(pool, 3) == ["#2", "#2", "#2"]
    assert [(c.label, c.state) for c in changes] == [("#1", DISABLED), ("#2", DISABLED),
                                                     ("#2", ACTIVE)]


def test_a_rate_limited_key_cools_down_and_the_others_go_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    pool, changes = pool_of(A, B)
    first, second = pool.keys
    pool.limited(first, {"retry-after": "20"})
    assert first.state == COOLING and first.until == 1020.0
    assert picks(pool, 3) == ["#2", "#2", "#2"]
    assert pool.view()[0]["state"] == COOLING and pool.view()[0]["until"] is not None
    pool.limited(second, {"retry-after-ms": "5000"})
    assert pool.pick() is second  # all cooling: the one free soonest
    now[0] = 1006.0
    assert second.state == COOLING and pool.pick() is second and second.state == ACTIVE
    now[0] = 1021.0
    assert set(picks(pool, 4)) == {"#1", "#2"}
    assert changes == []  # a cool-down is no event
    pool.refused(first, 401)
    pool.limited(first, {"retry-after": "5"})
    assert first.state == DISABLED  # a disabled key stays out


def test_retry_after_forms_and_cap() -> None:
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": "7"}) == 7.0
    assert retry_after_s({"retry-after": "3600"}) == MAX_COOL_S
    assert retry_after_s({}) == 5.0
    assert retry_after_s({"retry-after": "soon"}) == 5.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_s({"retry-after": later}) <= 31
    assert retry_after_s({"retry-after": "0"}) == 0.0


def test_restore_sets_a_state_quietly() -> None:
    pool, changes = pool_of(A, B)
    pool.restore(pool.keys[0], DISABLED, since=5.0, reason="HTTP 401")
    assert pool.keys[0].since == 5.0 and picks(pool, 2) == ["#2", "#2"]
    pool.restore(pool.keys[0], ACTIVE, reason="re-enabled")
    assert set(picks(pool, 2)) == {"#1", "#2"} and changes == []
    with pytest.raises(ValueError, match="cool-down"):
        pool.restore(pool.keys[0], COOLING)


def test_a_failing_reporter_never_fails_the_request() -> None:
    def broken(change: KeyChange) -> None:
        raise RuntimeError("store down")

    pool = KeyPool.of("up", [A, B], report=broken)
    assert pool.refused(pool.keys[0], 401) is pool.keys[1]


# --- Provider.send with a pool -------------------------------------------------------------


class _Reply:
    def __init__(self, status: int, headers: Mapping[str, str] | None = None):
        self.status = status
        self.headers = dict(headers or {})
        self.read_count = 0

    async def read(self) -> bytes:
        self.read_count += 1
        return b"{}"

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        yield b"{}"

    def abort(self) -> None:
        pass

    def release(self) -> None:
        pass


class FakeUpstream:
    """Answers by key: 200 for accepted keys, 401 for the others, or a status per key."""

    def __init__(self, accepted: set[str], statuses: dict[str, int] | None = None):
        self.accepted = accepted
        self.statuses = statuses or {}
        self.seen: list[str] = []
        self.bodies: list[bytes | None] = []
        self.replies: list[_Reply] = []

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                   *, read_timeout: float, what: str) -> UpstreamResponse:
        key = headers.get("authorization", "").removeprefix("Bearer ")
        self.seen.append(key)
        self.bodies.append(body)
        status = self.statuses.get(key, 200 if key in self.accepted else 401)
        reply = _Reply(status, {"retry-after": "30"} if status == 429 else None)
        self.replies.append(reply)
        return reply

    async def close(self) -> None:
        pass


def provider_with(upstream: FakeUpstream, *secrets: str) -> tuple[OpenAICompatibleProvider,
                                                                   list[KeyChange]]:
    changes: list[KeyChange] = []
    pool = KeyPool.of("up", list(secrets), report=changes.append)
    provider = OpenAICompatibleProvider("up", base_url="http://up/v1", api_key=pool,
                                        models=("m",), transport=upstream, read_timeout=5,
                                        capabilities=Capabilities())
    return provider, changes


async def statuses(provider: OpenAICompatibleProvider, n: int) -> list[int]:
    replies = [await provider.send(Endpoint.CHAT, "m", b'{"model":"m"}', stream=False)
               for _ in range(n)]
    return [reply.status for reply in replies]


def test_send_resends_the_same_request_with_the_next_key_on_a_401() -> None:
    upstream = FakeUpstream({A, C})
    provider, changes = provider_with(upstream, A, B, C)
    assert asyncio.run(statuses(provider, 6)) == [200] * 6
    assert upstream.seen[:2] == [A, B]  # #2 refused: the same request went to another key
    assert upstream.seen[2] in (A, C) and len(upstream.seen) == 7
    assert set(upstream.seen[3:]) == {A, C}
    assert set(upstream.bodies) == {b'{"model":"m"}'}  # the same (prepared) body each time
    assert upstream.replies[1].read_count == 1  # the refused answer was read to free it
    assert [(c.label, c.state) for c in changes] == [("#2", DISABLED)]


def test_send_returns_the_refusal_only_when_every_key_is_out() -> None:
    upstream = FakeUpstream(set())
    provider, changes = provider_with(upstream, A, B)
    assert asyncio.run(statuses(provider, 3)) == [401, 401, 401]
    assert upstream.seen[:2] == [A, B]  # both tried once for the first request
    assert len(upstream.seen) == 4  # then one probe per request, no more retries
    assert len(changes) == 2
    upstream.accepted.add(B)  # the provider takes a key back: the probes find it
    assert asyncio.run(statuses(provider, 3))[-1] == 200
    assert provider.keys.keys[1].state == ACTIVE and provider.keys.keys[0].state == DISABLED
    assert [(c.label, c.state) for c in changes][-1] == ("#2", ACTIVE)


def test_a_one_key_provider_behaves_as_before() -> None:
    upstream = FakeUpstream(set())
    provider, changes = provider_with(upstream, A)
    assert asyncio.run(statuses(provider, 3)) == [401, 401, 401]
    assert upstream.seen == [A, A, A]  # one call per request, as before
    assert len(changes) == 1
    nokey = FakeUpstream(set(), {"": 200})
    provider, _ = provider_with(nokey)
    assert asyncio.run(statuses(provider, 2)) == [200, 200]
    assert nokey.seen == ["", ""]


def test_send_returns_a_429_and_cools_that_key() -> None:
    upstream = FakeUpstream({A, B}, {A: 429})
    provider, changes = provider_with(upstream, A, B)
    assert asyncio.run(statuses(provider, 4)) == [429, 200, 200, 200]
    assert upstream.seen == [A, B, B, B]
    assert provider.keys.keys[0].state == COOLING and changes == []


def test_a_pinned_key_is_tried_alone_and_changes_nothing() -> None:
    upstream = FakeUpstream({A})
    provider, changes = provider_with(upstream, A, B)

    async def main() -> int:
        reply = await provider.send(Endpoint.MODELS, "", None, stream=False,
                                    key=provider.keys.keys[1])
        return reply.status

    assert asyncio.run(main()) == 401
    assert upstream.seen == [B] and changes == []
    assert provider.keys.keys[1].state == ACTIVE


def test_concurrent_requests_on_a_revoked_key_all_succeed() -> None:
    upstream = FakeUpstream({A, C})
    provider, changes = provider_with(upstream, A, B, C)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(statuses(provider, 1) for _ in range(30))))

    results = asyncio.run(main())
    assert Counter(s for r in results for s in r) == Counter({200: 30})
    assert len(changes) == 1
