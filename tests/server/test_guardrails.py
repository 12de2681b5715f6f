"""Guardrails through the app: per environment, secrets and personal data in prompts are
blocked, masked before they reach the model, or only recorded; never logged as values."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import string
from pathlib import Path
from typing import Any

from support import AppClient, make_loaded, running_app

CHAT = "/v1/chat/completions"
GUARDRAILS = {"guardrails": {
    "default": {"secrets": "record", "pii": "off"},
    "environments": {"prod": {"secrets": "block", "pii": "mask"}}}}


def openai_key() -> str:
    alphabet = string.ascii_letters + string.digits + "_-"
    return "sk-proj-" + "".join(secrets.choice(alphabet) for _ in range(100))


def run_app(tmp_path: Path, test: Any) -> list[bytes]:
    """Run `test`; return the request log lines it produced."""
    loaded = make_loaded(tmp_path, raw=GUARDRAILS)
    lines: list[bytes] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.msg)  # type: ignore[arg-type]

    async def main() -> None:
        async with running_app(loaded) as client:
            await asyncio.wait_for(test(client), 30)

    logger = logging.getLogger("keystead.request")
    handler, previous = Collect(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        asyncio.run(main())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    return lines


async def chat(client: AppClient, key: str, content: str) -> Any:
    return await client.request("POST", CHAT, key=key, json_body={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})


def test_prod_blocks_secrets_and_masks_personal_data(tmp_path):
    leaked = openai_key()

    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-support-bot-01")
        blocked = await chat(client, key, f"why does {leaked} not work?")
        error = blocked.json()["error"]
        assert (blocked.status, error["code"]) == (400, "content_blocked")
        assert "openai-project" in error["message"] and leaked not in blocked.body.decode()
        masked = await chat(client, key, "email the refund to ana@example.com [[mock:tokens=40]]")
        assert masked.status == 200
        # The mock model repeats its prompt: it never saw the address.
        answer = masked.json()["choices"][0]["message"]["content"]
        assert "ana@example.com" not in answer and "REDACTED" in answer
        await client.runtime.ledger.flush()

    lines = run_app(tmp_path, test)
    assert [json.loads(line)["guard"] for line in lines] == [["openai-project"], ["email"]]
    assert not any(leaked.encode() in line or b"ana@example.com" in line for line in lines)


def test_other_environments_only_record(tmp_path):
    leaked = openai_key()

    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-support-bot-01")
        reply = await chat(client, key, f"key {leaked} and mail bo@example.org [[mock:tokens=60]]")
        assert reply.status == 200
        assert leaked in reply.json()["choices"][0]["message"]["content"]  # passed as is

    lines = run_app(tmp_path, test)
    assert [json.loads(line)["guard"] for line in lines] == [["openai-project"]]  # pii is off
    assert not any(leaked.encode() in line for line in lines)
