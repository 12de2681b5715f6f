"""A replayed stream read by the official openai SDK over real HTTP, as a client of a cache hit
would read it: the SDK must accumulate it back to the stored answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import orjson
from aiohttp import web

from cache.codec_fixtures import WEATHER_TOOL, mock_call_async, rich_completion, rich_response
from keystead.cache.assemble import completion_from_stream
from keystead.cache.replay import stream_from_completion, stream_from_response
from support import serving_http

HELLO: Any = [{"role": "user", "content": "hello"}]


@asynccontextmanager
async def replaying(stored: dict[str, bytes]) -> AsyncIterator[openai.AsyncOpenAI]:
    """A server that answers every POST with the replay of `stored[path]`, as a stream."""

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body.get("stream") is True
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        saved = stored[request.path]
        if request.path.endswith("/chat/completions"):
            events = stream_from_completion(saved, include_usage=include_usage, chunk_chars=3)
        else:
            events = stream_from_response(saved, chunk_chars=3)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    app.router.add_post("/v1/responses", answer)
    async with serving_http(app) as base, openai.AsyncOpenAI(
            base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=10) as client:
        yield client


async def accumulate_raw(client: openai.AsyncOpenAI, **options: Any) -> dict[str, Any]:
    """What an application does by hand with `create(stream=True)`."""
    stream = await client.chat.completions.create(model="gpt-4o", messages=HELLO,
                                                  stream=True, **options)
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump(exclude_unset=True)
        for choice in chunk.choices:
            slot = choices.setdefault(choice.index, {"content": None, "refusal": None,
                                                     "tool_calls": {}, "finish_reason": None})
            delta = choice.delta
            if delta.content is not None:
                slot["content"] = (slot["content"] or "") + delta.content
            if delta.refusal is not None:
                slot["refusal"] = (slot["refusal"] or "") + delta.refusal
            for call in delta.tool_calls or ():
                entry = slot["tool_calls"].setdefault(call.index, {"id": None, "name": "",
                                                                   "arguments": ""})
                entry["id"] = entry["id"] or call.id
                if call.function is not None:
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
            if choice.finish_reason is not None:
                slot["finish_reason"] = choice.finish_reason
    return {"choices": choices, "usage": usage}


def expected_raw(completion: dict[str, Any], include_usage: bool) -> dict[str, Any]:
    choices = {}
    for choice in completion["choices"]:
        message = choice["message"]
        calls = {i: {"id": c["id"], "name": c["function"]["name"],
                     "arguments": c["function"]["arguments"]}
                 for i, c in enumerate(message.get("tool_calls") or ())}
        choices[choice["index"]] = {"content": message["content"], "refusal": message["refusal"],
                                    "tool_calls": calls, "finish_reason": choice["finish_reason"]}
    return {"choices": choices, "usage": completion["usage"] if include_usage else None}


def test_the_sdk_reads_a_replayed_chat_stream_back_to_the_stored_answer() -> None:
    async def main() -> None:
        mock = completion_from_stream(await mock_call_async("/v1/chat/completions", {
            "model": "gpt-4o-mini", "messages": HELLO, "tools": [WEATHER_TOOL], "n": 2,
            "stream": True, "stream_options": {"include_usage": True}}))
        assert mock is not None
        for completion in (rich_completion(), orjson.loads(mock)):
            async with replaying({"/v1/chat/completions": orjson.dumps(completion)}) as client:
                for include_usage in (True, False):
                    options = {"stream_options": {"include_usage": True}} if include_usage else {}
                    got = await accumulate_raw(client, **options)
                    assert got == expected_raw(completion, include_usage)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_the_sdk_stream_helper_builds_the_stored_completion() -> None:
    async def main() -> None:
        completion = rich_completion()
        async with replaying({"/v1/chat/completions": orjson.dumps(completion)}) as client, \
                client.chat.completions.stream(model="gpt-4o", messages=HELLO,
                                               stream_options={"include_usage": True}) as stream:
            deltas = [event.delta async for event in stream if event.type == "content.delta"]
            final = await stream.get_final_completion()
        assert "".join(deltas) == "Paris is lovely."
        got = final.model_dump(mode="json", exclude_none=True)
        assert (got["id"], got["model"], got["created"]) == (
            completion["id"], completion["model"], completion["created"])
        assert got["system_fingerprint"] == completion["system_fingerprint"]
        assert got["usage"]["prompt_tokens"] == 40 and got["usage"]["total_tokens"] == 71
        for mine, theirs in zip(got["choices"], completion["choices"], strict=True):
            assert mine["finish_reason"] == theirs["finish_reason"]
            message, stored = mine["message"], theirs["message"]
            assert message.get("content") == stored["content"]
            assert message.get("refusal") == stored["refusal"]
            calls = [(c["id"], c["function"]["name"], c["function"]["arguments"])
                     for c in message.get("tool_calls") or ()]
            assert calls == [(c["id"], c["function"]["name"], c["function"]["arguments"])
                             for c in stored.get("tool_calls") or ()]
            assert message.get("annotations", []) == stored.get("annotations", [])
            if theirs["logprobs"] is not None:
                assert mine["logprobs"]["content"] == theirs["logprobs"]["content"]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_the_sdk_reads_a_replayed_responses_stream() -> None:
    async def main() -> None:
        mock = b"".join(await mock_call_async("/v1/responses", {"model": "gpt-4o-mini",
                                                                "input": "Tell me a story"}))
        for response in (rich_response(), orjson.loads(mock)):
            async with replaying({"/v1/responses": orjson.dumps(response)}) as client:
                kinds = []
                async for event in await client.responses.create(
                        model="gpt-4o", input="hi", stream=True):
                    kinds.append(type(event).__name__)
                assert kinds[0] == "ResponseCreatedEvent" and kinds[-1] == (
                    "ResponseCompletedEvent")
                async with client.responses.stream(model="gpt-4o", input="hi") as stream:
                    text = "".join([event.delta async for event in stream
                                    if event.type == "response.output_text.delta"])
                    final = await stream.get_final_response()
            messages = [item for item in response["output"] if item["type"] == "message"]
            stored_text = "".join(part["text"] for item in messages for part in item["content"]
                                  if part["type"] == "output_text")
            assert text == final.output_text == stored_text
            assert final.id == response["id"] and final.status == response["status"]
            assert final.usage is not None
            assert final.usage.output_tokens == response["usage"]["output_tokens"]
            assert [item.model_dump(mode="json", exclude_none=True)["id"]
                    for item in final.output] == [item["id"] for item in response["output"]]

    asyncio.run(asyncio.wait_for(main(), 30))
