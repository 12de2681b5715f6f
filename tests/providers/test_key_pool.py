"""The key pool on its own: round-robin over the active keys, a refused key out (reported once),
a rate-limited key cooling down, every key out still answering, and the provider's send loop
against a fake transport that refuses chosen keys; a 403 read for what it is about (the key,
the gateway's place, the request) before any key is taken out."""

from __future__ import annotations

import asyncio
import hashlib
import json
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
    FAULT_WINDOW_S,
    FAULTS_TO_DISABLE,
    FORBIDDEN_KEY,
    FORBIDDEN_PLACE,
    FORBIDDEN_REQUEST,
    MAX_COOL_S,
    KeyChange,
    KeyPool,
    classify_403,
    fingerprint,
    normalize_label,
    retry_after_s,
)
from keystead.providers.openai_compatible import OpenAICompatibleProvider
from keystead.providers.transport import Transport, UpstreamResponse

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


def provider_with(upstream: Transport, *secrets: str) -> tuple[OpenAICompatibleProvider,
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


# --- 403: about the key, the gateway's place, or the request ----------------------------------

# What providers answer (docs/providers.md quotes them).
MODEL_403 = (b'{"error": {"message": "Project `proj_abc` does not have access to model `gpt-4.1`"'
             b', "type": "invalid_request_error", "param": null, "code": "model_not_found"}}')
PLACE_403 = (b'{"error": {"code": "unsupported_country_region_territory", "message": "Country, '
             b'region, or territory not supported", "param": null, "type": "request_forbidden"}}')
KEY_403 = (b'[{"error": {"code": 403, "message": "Permission denied: Consumer \'api_key:x\' has '
           b'been suspended.", "status": "PERMISSION_DENIED", "details": [{"reason": '
           b'"CONSUMER_SUSPENDED", "domain": "googleapis.com"}]}}]')


class _Answer(_Reply):
    def __init__(self, status: int, body: bytes):
        super().__init__(status)
        self.body = body

    async def read(self) -> bytes:
        self.read_count += 1
        return self.body


class ForbiddingUpstream:
    """Answers 403 (with `body`) to the (key, model) pairs in `refuse`, 200 to the rest."""

    def __init__(self, refuse: set[tuple[str, str]], body: bytes = MODEL_403):
        self.refuse = refuse
        self.body = body
        self.seen: list[tuple[str, str]] = []

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                   *, read_timeout: float, what: str) -> UpstreamResponse:
        key = headers.get("authorization", "").removeprefix("Bearer ")
        model = json.loads(body or b"{}")["model"]
        self.seen.append((key, model))
        if (key, model) in self.refuse or ("*", model) in self.refuse:
            return _Answer(403, self.body)
        return _Answer(200, b'{"ok": true}')

    async def close(self) -> None:
        pass


async def ask(provider: OpenAICompatibleProvider, model: str) -> int:
    reply = await provider.send(Endpoint.CHAT, model, json.dumps({"model": model}).encode(),
                                stream=False)
    return reply.status


def test_a_403_about_the_request_disables_no_key() -> None:
    """Issue 13: one client request answered 403 (a model the project may not use) took a key
    out for everyone. Now every key is tried once, the client gets the 403, no key changes, and
    the next request (another model) goes on as before."""
    upstream = ForbiddingUpstream({("*", "gpt-4.1")})
    provider, changes = provider_with(upstream, A, B)
    assert asyncio.run(ask(provider, "gpt-4.1")) == 403
    assert upstream.seen == [(A, "gpt-4.1"), (B, "gpt-4.1")]
    assert changes == [] and {k.state for k in provider.keys.keys} == {ACTIVE}
    assert [asyncio.run(ask(provider, "m")) for _ in range(4)] == [200] * 4
    assert Counter(key for key, model in upstream.seen[2:]) == Counter({A: 2, B: 2})
    for _ in range(FAULTS_TO_DISABLE * 2):  # however often: nobody served it, nobody is at fault
        assert asyncio.run(ask(provider, "gpt-4.1")) == 403
    assert changes == [] and all(not k.faults for k in provider.keys.keys)


def test_a_key_that_refuses_what_another_serves_goes_out_after_repeated_faults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    upstream = ForbiddingUpstream({(A, "gpt-4.1"), (A, "o3")})
    provider, changes = provider_with(upstream, A, B)
    first = provider.keys.keys[0]

    def on_a(model: str) -> int:  # a request that starts on #1
        provider.keys._next = 0
        return asyncio.run(ask(provider, model))

    assert on_a("gpt-4.1") == 200  # #1 refused, #2 served: the client never sees the 403
    assert upstream.seen == [(A, "gpt-4.1"), (B, "gpt-4.1")]
    assert on_a("o3") == 200 and len(first.faults) == 2 and first.state == ACTIVE
    assert on_a("m") == 200  # #1 still serves what it may
    now[0] += FAULT_WINDOW_S + 1  # old faults expire
    assert on_a("gpt-4.1") == 200 and len(first.faults) == 1 and first.state == ACTIVE
    assert on_a("o3") == 200 and on_a("gpt-4.1") == 200
    assert first.state == DISABLED and first.reason is not None
    assert first.reason.startswith("HTTP 403: refused 3 requests")
    assert [(c.label, c.state, c.status) for c in changes] == [("#1", DISABLED, 403)]
    upstream.seen.clear()
    assert on_a("m") == 200 and upstream.seen == [(B, "m")]  # out of rotation


def test_a_403_that_names_the_key_takes_it_out_at_once() -> None:
    upstream = ForbiddingUpstream({(A, "m")}, KEY_403)
    provider, changes = provider_with(upstream, A, B)
    assert asyncio.run(ask(provider, "m")) == 200
    assert upstream.seen == [(A, "m"), (B, "m")]
    assert provider.keys.keys[0].state == DISABLED
    assert [(c.label, c.reason, c.status) for c in changes] == [("#1", "HTTP 403", 403)]


def test_a_403_about_the_gateways_place_tries_no_other_key() -> None:
    upstream = ForbiddingUpstream({("*", "m")}, PLACE_403)
    provider, changes = provider_with(upstream, A, B, C)
    assert asyncio.run(ask(provider, "m")) == 403
    assert upstream.seen == [(A, "m")]  # every key would hear the same
    assert changes == [] and {k.state for k in provider.keys.keys} == {ACTIVE}


def test_a_one_key_provider_keeps_its_key_on_a_403() -> None:
    upstream = ForbiddingUpstream({(A, "gpt-4.1")})
    provider, changes = provider_with(upstream, A)
    assert [asyncio.run(ask(provider, "gpt-4.1")) for _ in range(5)] == [403] * 5
    assert asyncio.run(ask(provider, "m")) == 200
    assert changes == [] and provider.keys.keys[0].state == ACTIVE


@pytest.mark.parametrize(("body", "about"), [
    (MODEL_403, FORBIDDEN_REQUEST), (PLACE_403, FORBIDDEN_PLACE), (KEY_403, FORBIDDEN_KEY),
    (b'{"type":"error","error":{"type":"permission_error","message":"Your API key does not '
     b'have permission to use the specified resource."}}', FORBIDDEN_REQUEST),
    (b'{"error":{"code":"403","message": "Access denied due to Virtual Network/Firewall '
     b'rules."}}', FORBIDDEN_PLACE),
    (b'{"error":{"type":"forbidden","message":"Request not allowed"}}', FORBIDDEN_PLACE),
    (b'{"error":{"code":403,"message":"Your API key was reported as leaked. Please use another '
     b'API key.","status":"PERMISSION_DENIED"}}', FORBIDDEN_KEY),
    (b"", FORBIDDEN_REQUEST), (b"<html>403 Forbidden</html>", FORBIDDEN_REQUEST),
])
def test_what_a_403_is_about(body: bytes, about: str) -> None:
    assert classify_403(body) == about
