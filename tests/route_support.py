"""Helpers for route tests through a real HTTP server: the gateway served by uvicorn in the
test's loop, the official openai SDK as the client, and readings of the mock providers and the
ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai

from keystead.state.records import UsageRecord
from support import AppClient, make_loaded, running_app, serving_asgi

MODELS = ["gpt-4o-mini", "gpt-4o"]
# Retries without waiting long: a test's schedule in milliseconds.
FAST_RETRY = {"attempts": 3, "base_ms": 1, "cap_ms": 5, "max_retry_after_s": 2,
              "attempt_timeout_s": 0.5}

RouteTest = Callable[[AppClient, openai.AsyncOpenAI], Awaitable[None]]


@asynccontextmanager
async def gateway(tmp_path: Path, raw: dict[str, Any]) -> AsyncIterator[
        tuple[AppClient, openai.AsyncOpenAI]]:
    """The app on `raw`, served over HTTP, and an SDK client with a fresh key (no retries)."""
    async with running_app(make_loaded(tmp_path, raw)) as client:
        key = await client.create_key()
        async with serving_asgi(client.app) as base:
            sdk = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0,
                                     timeout=10)
            try:
                yield client, sdk
            finally:
                await sdk.close()


def run_gateway(tmp_path: Path, test: RouteTest, raw: dict[str, Any]) -> None:
    async def main() -> None:
        async with gateway(tmp_path, raw) as (client, sdk):
            await asyncio.wait_for(test(client, sdk), 30)

    asyncio.run(main())


def received(client: AppClient, provider: str) -> int:
    """Requests the in-process mock provider `provider` has seen."""
    return len(client.runtime.providers.providers[provider].transport.app.received)  # type: ignore[attr-defined]


async def row(client: AppClient, request_id: str) -> UsageRecord:
    """The request's ledger row. A client has its answer a moment before the gateway queues
    the row (the request's last step runs after the response is sent): wait for it."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        await client.runtime.ledger.flush()
        rows = [r for r in await client.runtime.store.recent_usage(200)
                if r.request_id == request_id]
        if rows or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.01)
    assert len(rows) == 1
    return rows[0]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
