"""An upstream that echoes its key in an error body never gets it to the client (issue 13).

Real upstreams over HTTP (aiohttp) answer 400 / 401 / 429 / 500 with the key they were sent in
the message, as some providers and proxies do, plus a credential of another format. Through the
whole gateway, streamed and not, on the OpenAI route (an OpenAI-compatible provider, and an
Anthropic provider translated) and on Anthropic's own `/v1/messages`: the client gets the
error (its status, its message with the keys masked), never a key. The official SDKs then
raise their usual errors, with nothing secret in them."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from support import AppClient, make_loaded, running_app, serving_asgi, serving_http

OWN = "pk-custom-" + secrets.token_hex(20)  # the pool's key: no detector knows this format
OTHER = "sk-proj-" + secrets.token_urlsafe(60)  # a key the detectors know, echoed as well
STATUSES = (400, 401, 429, 500)


def echo(request: web.Request, status: int, anthropic_shape: bool) -> web.Response:
    sent = request.headers.get("x-api-key") or \
        request.headers.get("authorization", "").removeprefix("Bearer ")
    message = f"Incorrect API key provided: {sent}. (Proxy saw {OTHER}.)"
    if anthropic_shape:
        kind = {400: "invalid_request_error", 401: "authentication_error",
                429: "rate_limit_error"}.get(status, "api_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                          "code": "invalid_api_key"}}
    return web.json_response(body, status=status)


async def openai_handler(request: web.Request) -> web.Response:
    model = (await request.json())["model"]  # echo-400, echo-429, ...
    return echo(request, int(model.rsplit("-", 1)[1]), anthropic_shape=False)


async def anthropic_handler(request: web.Request) -> web.Response:
    model = (await request.json())["model"]  # claude-echo-400, ...
    return echo(request, int(model.rsplit("-", 1)[1]), anthropic_shape=True)


def assert_clean(body: bytes, status: int, expected: int) -> None:
    assert status == expected, body
    assert OWN.encode() not in body and OTHER.encode() not in body
    assert OWN[10:30].encode() not in body  # not a piece of it either


async def requests(client: AppClient, key: str) -> list[tuple[str, int, bool, int, bytes]]:
    """(route, upstream status, stream, client status, body) for every case."""
    out = []
    for status in STATUSES:
        for stream in (False, True):
            chat = {"max_tokens": 10, "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]}
            for route, model in (("openai", f"echo-{status}"),
                                 ("openai->anthropic", f"claude-echo-{status}")):
                reply = await client.request("POST", "/v1/chat/completions", key=key,
                                             json_body={**chat, "model": model})
                out.append((route, status, stream, reply.status, reply.body))
            reply = await client.request(
                "POST", "/v1/messages", key=key, headers={"anthropic-version": "2023-06-01"},
                json_body={**chat, "model": f"claude-echo-{status}"})
            out.append(("messages", status, stream, reply.status, reply.body))
    return out


def test_no_route_relays_a_key_an_upstream_echoes(tmp_path: Path) -> None:
    async def main() -> None:
        oai, claude = web.Application(), web.Application()
        oai.router.add_post("/v1/chat/completions", openai_handler)
        claude.router.add_post("/v1/messages", anthropic_handler)
        async with serving_http(oai) as oai_url, serving_http(claude) as claude_url:
            providers = {
                "oai": {"type": "openai-compatible", "base_url": f"{oai_url}/v1",
                        "api_key": "${OWN_KEY}", "models": ["echo-*"]},
                "claude": {"type": "anthropic", "base_url": claude_url,
                           "api_key": "${OWN_KEY}", "models": ["claude-echo-*"]},
            }
            loaded = make_loaded(tmp_path, {"providers": providers}, env={"OWN_KEY": OWN})
            async with running_app(loaded) as client:
                key = await client.create_key("prod-echo-test")
                results = await requests(client, key)
                await sdk_checks(client, key)
        seen = set()
        for route, status, stream, got, body in results:
            if status == 401:  # the gateway's own credentials: never the provider's text
                assert_clean(body, got, 502)
                assert b"upstream_auth_failed" in body
            else:
                assert_clean(body, got, status)
                assert b"[REDACTED:provider-key]" in body  # relayed, with the key masked
                assert b"[REDACTED:openai-project]" in body
                assert b"Incorrect API key provided" in body
            seen.add((route, status, stream))
        assert len(seen) == 3 * len(STATUSES) * 2

    asyncio.run(main())


async def sdk_checks(client: AppClient, key: str) -> None:
    """What the official SDKs raise carries no key either."""
    async with serving_asgi(client.app) as url:
        oai = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=10)
        claude = anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0,
                                          timeout=10)
        try:
            with pytest.raises(openai.BadRequestError) as bad:
                await oai.chat.completions.create(
                    model="echo-400", messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(openai.InternalServerError) as broken:
                stream = await oai.chat.completions.create(
                    model="claude-echo-500", stream=True,
                    messages=[{"role": "user", "content": "hi"}])
                async for _ in stream:
                    pass
            with pytest.raises(anthropic.RateLimitError) as limited:
                await claude.messages.create(model="claude-echo-429", max_tokens=10,
                                             messages=[{"role": "user", "content": "hi"}])
        finally:
            await oai.close()
            await claude.close()
    for error in (bad.value, broken.value, limited.value):
        text = str(error) + json.dumps(error.body)
        assert OWN not in text and OTHER not in text
        assert "[REDACTED:provider-key]" in text
