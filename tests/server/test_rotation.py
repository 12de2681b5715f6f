"""Key rotation (P5) through the real app, on both backends: the new text works at once, the old
one during the grace period only, and the key keeps its id, limits, budget and usage."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from backends import BACKENDS, backend_config
from keystead.keys.format import parse_key
from keystead.runtime import KEYS_VERSION
from keystead.state.records import Limits
from support import AppClient, make_loaded, running_app

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 20}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest):
    with backend_config(request.param) as raw:
        yield raw


def run_app(tmp_path: Path, backend: dict[str, Any], test: Any) -> None:
    loaded = make_loaded(tmp_path, raw={**backend,
                                        "keys": {"rotate_every": {"prod": "30d"}}})

    async def main() -> None:
        async with running_app(loaded) as client:
            await asyncio.wait_for(test(client), 60)

    asyncio.run(main())


async def status(client: AppClient, key: str) -> tuple[int, str | None]:
    reply = await client.request("POST", CHAT, key=key, json_body=BODY)
    return reply.status, (reply.json()["error"]["code"] if reply.status != 200 else None)


def test_both_texts_work_during_the_grace_and_the_key_stays_the_same(tmp_path, backend):
    async def test(client: AppClient) -> None:
        old = await client.create_key("prod-search-api")
        key_id = parse_key(old).key_id  # type: ignore[union-attr]
        rt = client.runtime
        await rt.store.update_key(key_id, limits=Limits(rpm=5, budget_usd=Decimal("1")))
        await rt.changed(KEYS_VERSION)
        assert await status(client, old) == (200, None)

        reply = await client.admin("POST", f"/admin/keys/{key_id}/rotate", {"grace": "1h"})
        assert reply.status == 200, reply.body
        rotated = reply.json()
        new = rotated["key"]
        assert rotated["id"] == key_id and rotated["name"] == "prod-search-api"
        assert parse_key(new).key_id != key_id  # type: ignore[union-attr]
        assert rotated["limits"]["rpm"] == 5 and rotated["limits"]["budget_usd"] == "1"
        assert rotated["previous_key_expires_at"] is not None
        due = time.time() + 30 * 86400
        assert rotated["rotation_due_at"][:13] == time.strftime("%Y-%m-%dT%H", time.gmtime(due))

        assert await status(client, new) == (200, None)
        assert await status(client, old) == (200, None)
        # One key, one rate limit (rpm 5), whichever text makes the calls.
        assert await status(client, new) == (200, None)
        assert await status(client, old) == (200, None)
        assert await status(client, old) == (429, "rate_limit_exceeded")

        await rt.ledger.flush()
        rows = await rt.store.recent_usage(100)
        assert {r.key_id for r in rows} == {key_id}  # usage carries over

        # The grace period ends: the old text is refused, the new one works.
        record = await rt.store.get_key(key_id)
        assert record is not None
        await rt.store.update_key(key_id, previous_expires_at=time.time() - 1,
                                  limits=Limits())
        await rt.changed(KEYS_VERSION)
        assert await status(client, old) == (401, "key_rotated")
        assert await status(client, new) == (200, None)

    run_app(tmp_path, backend, test)


def test_a_rotation_without_grace_refuses_the_old_text_at_once(tmp_path, backend):
    async def test(client: AppClient) -> None:
        old = await client.create_key("prod-search-api")
        reply = await client.admin("POST", "/admin/keys/prod-search-api/rotate", {"grace": "0s"})
        assert reply.json()["previous_key_expires_at"] is None
        assert await status(client, old) == (401, "key_rotated")
        assert await status(client, reply.json()["key"]) == (200, None)

    run_app(tmp_path, backend, test)


def test_a_second_rotation_ends_the_first_grace_and_revoke_ends_all(tmp_path, backend):
    async def test(client: AppClient) -> None:
        first = await client.create_key("prod-search-api")
        second = (await client.admin("POST", "/admin/keys/prod-search-api/rotate")).json()["key"]
        # The key can be named by the id inside its new text, too.
        second_id = parse_key(second).key_id  # type: ignore[union-attr]
        third = (await client.admin("POST", f"/admin/keys/{second_id}/rotate")).json()["key"]
        assert await status(client, first) == (401, "invalid_api_key")
        assert await status(client, second) == (200, None)
        assert await status(client, third) == (200, None)
        await client.admin("POST", "/admin/keys/prod-search-api/revoke", {"reason": "test"})
        assert await status(client, second) == (401, "key_revoked")
        assert await status(client, third) == (401, "key_revoked")
        refused = await client.admin("POST", "/admin/keys/prod-search-api/rotate")
        assert refused.status == 400

    run_app(tmp_path, backend, test)


def test_keys_due_for_rotation_are_listed(tmp_path, backend):
    async def test(client: AppClient) -> None:
        await client.create_key("prod-search-api")
        await client.create_key("dev-search-api")  # dev has no rotation policy
        assert (await client.admin("GET", "/admin/keys?due_within=0s")).json() == []
        soon = (await client.admin("GET", "/admin/keys?due_within=31d")).json()
        assert [k["name"] for k in soon] == ["prod-search-api"]
        await client.admin("POST", "/admin/keys/prod-search-api/rotate")
        # A rotation restarts the clock, still within 31 days.
        assert len((await client.admin("GET", "/admin/keys?due_within=31d")).json()) == 1
        assert (await client.admin("GET", "/admin/keys?due_within=29d")).json() == []
        bad = await client.admin("GET", "/admin/keys?due_within=soon")
        assert bad.status == 400 and bad.json()["error"]["param"] == "due_within"

    run_app(tmp_path, backend, test)
