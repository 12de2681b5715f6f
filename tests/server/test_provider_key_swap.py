"""A provider key replaced in the vault under load: no request fails, and every request after
the swap carries the new key (P5)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from aiohttp import web

from support import AppClient, make_loaded, running_app, serving_http

OLD, NEW = "sk-old-provider-key-0123456789", "sk-new-provider-key-9876543210"
ANSWER = (b'{"id":"c1","object":"chat.completion","created":1,"model":"m1","choices":[{"index":0,'
          b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}')


def test_swapping_the_provider_key_under_load_fails_no_request(tmp_path: Path) -> None:
    seen: list[str] = []
    accepted = {OLD, NEW}  # a provider accepts both while a rotation overlaps

    async def upstream(request: web.Request) -> web.Response:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        seen.append(key)
        await asyncio.sleep(0.005)
        if key not in accepted:
            return web.json_response({"error": {"message": "bad key", "type": "auth",
                                                "code": "invalid_api_key", "param": None}},
                                     status=401)
        return web.Response(body=ANSWER, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", upstream)
        async with serving_http(app) as base, running_app(make_loaded(tmp_path)) as client:
            await run(client, base)

    async def run(client: AppClient, base: str) -> None:
        added = await client.admin("POST", "/admin/providers", {
            "name": "upstream", "type": "openai-compatible",
            "base_url": f"{base}/v1", "api_key": OLD, "models": ["m1"]})
        assert added.status == 201, added.body
        key = await client.create_key("prod-swap-test")

        async def call() -> int:
            reply = await client.request("POST", "/v1/chat/completions", key=key, json_body={
                "model": "m1", "messages": [{"role": "user", "content": "hi"}]})
            return reply.status

        async def load(n: int) -> list[int]:
            return list(await asyncio.gather(*(call() for _ in range(n))))

        async def swap() -> int:
            await asyncio.sleep(0.05)  # in the middle of the load
            reply = await client.admin("PUT", "/admin/providers/upstream/key", {"api_key": NEW})
            return reply.status

        statuses, swapped = await asyncio.gather(load(200), swap())
        assert swapped == 200
        accepted.discard(OLD)  # the operator now revokes the old key at the provider
        after = await load(50)
        assert Counter(statuses + after) == Counter({200: 250})
        assert set(seen[-50:]) == {NEW}
        assert OLD in seen  # the load did start on the old key
        stored = b"".join(p.read_bytes() for p in tmp_path.glob("keystead.db*"))  # noqa: ASYNC240
        assert NEW.encode() not in stored and OLD.encode() not in stored  # sealed in the vault
        bad = await client.admin("PUT", "/admin/providers/mock/key", {"api_key": "x"})
        assert bad.status == 400  # a config provider without a vault key: changed where it lives

    asyncio.run(main())
