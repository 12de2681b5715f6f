"""Routes through a real HTTP server with the official openai SDK, against the fault-scripting
mock upstream: each reliability move (retry, Retry-After, timeout, reset, malformed answer,
context overflow, schema repair and fallback, circuit breaker) as an application sees it, and
as the ledger records it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai
import pytest

from keystead.providers.transport import ASGITransport
from route_support import (
    FAST_RETRY,
    MODELS,
    RouteTest,
    ask,
    received,
    row,
    run_gateway,
)
from support import AppClient, make_loaded, running_app

CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
               "required": ["city"], "additionalProperties": False}


def routing_config(primary_faults: str | None = None, **route_overrides: Any) -> dict[str, Any]:
    """Two mock providers behind `support-default` (`primary` first, `backup`), a fallback
    route on a third; `primary_faults` scripts every request that reaches `primary`."""
    support = {"strategy": "ordered", "retry": FAST_RETRY, "fallbacks": ["support-smart"],
               "deployments": [{"provider": "primary", "model": "gpt-4o-mini"},
                               {"provider": "backup", "model": "gpt-4o-mini"}]}
    support.update(route_overrides)
    return {
        "providers": {"primary": {"type": "mock", "models": MODELS,
                                  "mock": {"faults": primary_faults}},
                      "backup": {"type": "mock", "models": MODELS},
                      "mock": {"type": "mock", "models": MODELS}},
        "routes": {
            "support-default": support,
            "single": {"retry": FAST_RETRY, "deployments": [
                {"provider": "primary", "model": "gpt-4o-mini"}]},
            "support-smart": {"retry": FAST_RETRY, "deployments": [
                {"provider": "mock", "model": "gpt-4o"}]},
        },
        "routing": {"breaker": {"failures": 3, "window_s": 60, "cooldown_s": 60}},
    }


def run(tmp_path: Path, test: RouteTest, raw: dict[str, Any] | None = None) -> None:
    run_gateway(tmp_path, test, raw or routing_config())


def test_a_5xx_is_retried_on_the_other_deployment(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="support-default", messages=ask("hello"))
        completion = raw.parse()
        assert completion.choices[0].message.content
        assert raw.headers["x-keystead-route"] == "support-default"
        assert raw.headers["x-keystead-deployment"] == "backup/gpt-4o-mini"
        assert raw.headers["x-keystead-attempts"] == "2"
        record = await row(client, raw.headers["x-request-id"])
        assert (record.route, record.provider, record.attempts, record.status) == (
            "support-default", "backup", 2, 200)
        assert record.cost_usd > 0

    run(tmp_path, test, routing_config("503"))


def test_a_429_is_retried_on_the_same_deployment_after_its_retry_after(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        started = asyncio.get_running_loop().time()
        raw = await sdk.chat.completions.with_raw_response.create(
            model="single", messages=ask("[[mock:faults=429:retry_ms=400,ok]] hi"))
        waited = asyncio.get_running_loop().time() - started
        assert raw.http_response.status_code == 200 and waited >= 0.4
        assert raw.headers["x-keystead-attempts"] == "2"

        # A Retry-After beyond max_retry_after_s is not waited for: the route falls back.
        raw = await sdk.chat.completions.with_raw_response.create(
            model="single", messages=ask("[[mock:faults@gpt-4o-mini=429:retry=30*]] hi"))
        assert raw.http_response.status_code == 200
        assert raw.headers["x-keystead-deployment"] == "mock/gpt-4o"
        assert raw.headers["x-keystead-fallback"] == "true"

    raw = routing_config()
    raw["routes"]["single"]["fallbacks"] = ["support-smart"]
    run(tmp_path, test, raw)


def test_a_slow_first_byte_times_out_and_moves_on(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        started = asyncio.get_running_loop().time()
        raw = await sdk.chat.completions.with_raw_response.create(
            model="support-default", messages=ask("hi"))
        assert asyncio.get_running_loop().time() - started < 2.5
        assert raw.headers["x-keystead-deployment"] == "backup/gpt-4o-mini"
        record = await row(client, raw.headers["x-request-id"])
        assert record.attempts == 2

    run(tmp_path, test, routing_config("slow=3000"))


def test_a_stream_is_retried_before_its_first_byte_only(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        # Reset before answering: retried, and the client streams a whole answer.
        stream = await sdk.chat.completions.create(
            model="support-default", messages=ask("[[mock:faults=reset]] tell me"),
            stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        # Reset after two chunks reached the client: not retried (the client has bytes), the
        # stream ends with an error event the SDK raises.
        stream = await sdk.chat.completions.create(
            model="support-default", messages=ask("[[mock:faults=reset=2]] tell me more"),
            stream=True)
        with pytest.raises(openai.APIError):
            async for _chunk in stream:
                pass
        assert received(client, "backup") == 1  # only the first stream's retry went there

    run(tmp_path, test)


def test_a_malformed_answer_is_retried(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="single", messages=ask("[[mock:faults=badjson]] hi"))
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-keystead-attempts"] == "2"

    run(tmp_path, test)


def test_a_stream_whose_first_event_is_malformed_is_retried_never_relayed(
        tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        # On a route: the first event is not JSON, so the attempt failed and the next serves.
        stream = await sdk.chat.completions.with_raw_response.create(
            model="single", messages=ask("[[mock:faults=badjson]] hi"), stream=True)
        assert stream.headers["x-keystead-attempts"] == "2"
        chunks = [chunk async for chunk in stream.parse()]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        # A model name gets one attempt: a 502 before any byte, recorded as the failure it is,
        # never a 200 whose stream has neither an error event nor [DONE].
        with pytest.raises(openai.APIStatusError) as failed:
            await sdk.chat.completions.create(
                model="gpt-4o-mini", messages=ask("[[mock:faults=badjson*]] hi"), stream=True)
        assert failed.value.status_code == 502
        assert failed.value.code == "upstream_malformed"
        record = await row(client, failed.value.response.headers["x-request-id"])
        assert (record.status, record.error_code) == (502, "upstream_malformed")

    run(tmp_path, test)


@pytest.mark.parametrize(("first", "outcome"), [
    (b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n',
     "upstream_stream_error"),
    (b"event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\"}}"
     b"\n\n", "upstream_stream_error"),
    (b"data: [DONE]\n\n", "upstream_malformed"),
    (b'{"id": "chatcmpl-1", "choices": []}', "upstream_malformed"),
    (b"<html>bad gateway</html>\n\n", "upstream_malformed"),
    (b": keep-alive\n\ndata: not json\n\n", "upstream_malformed"),
])
def test_a_stream_that_starts_with_an_error_or_garbage_is_a_failed_attempt(
        tmp_path: Path, first: bytes, outcome: str) -> None:
    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": first})

    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        provider = client.runtime.providers.providers["mock"]
        provider.transport = ASGITransport(upstream)  # every attempt gets `first`
        with pytest.raises(openai.APIStatusError) as failed:
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=ask("hi"),
                                              stream=True)
        assert (failed.value.status_code, failed.value.code) == (502, outcome)

    run(tmp_path, test)


def test_comments_and_pings_before_the_first_event_pass_through(tmp_path: Path) -> None:
    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1,
                 "model": "gpt-4o-mini",
                 "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for part in (b": processing\n\n: still here\n\n", b"data: " + json.dumps(chunk).encode(),
                     b"\n\ndata: [DONE]\n\n"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        client.runtime.providers.providers["mock"].transport = ASGITransport(upstream)
        stream = await sdk.chat.completions.create(model="gpt-4o-mini", messages=ask("hi"),
                                                   stream=True)
        assert [c.choices[0].delta.content async for c in stream if c.choices] == ["hi"]

    run(tmp_path, test)


def test_a_context_overflow_falls_back_to_the_bigger_model(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="support-default", messages=ask("[[mock:faults@gpt-4o-mini=context*]] hi"))
        completion = raw.parse()
        assert completion.model == "gpt-4o"
        assert raw.headers["x-keystead-fallback"] == "true"
        assert received(client, "backup") == 0  # an overflow skips the tier's other deployments
        record = await row(client, raw.headers["x-request-id"])
        assert (record.fallback, record.model_served, record.provider) == (True, "gpt-4o",
                                                                          "mock")

    run(tmp_path, test)


def test_an_invalid_structured_answer_is_repaired_then_falls_back(tmp_path: Path) -> None:
    schema_format: Any = {"type": "json_schema",
                          "json_schema": {"name": "city", "schema": CITY_SCHEMA,
                                          "strict": True}}

    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        # repair (the default): the same deployment is asked again, quoting the error
        raw = await sdk.chat.completions.with_raw_response.create(
            model="single", messages=ask("[[mock:faults=schema]] which city?"),
            response_format=schema_format)
        content = raw.parse().choices[0].message.content
        assert content is not None and set(json.loads(content)) == {"city"}
        record = await row(client, raw.headers["x-request-id"])
        assert record.schema_valid is True
        first_usage = raw.parse().usage
        assert first_usage is not None
        # The discarded answer was billed: the ledger counts both answers' tokens.
        assert record.completion_tokens > first_usage.completion_tokens

        # fallback: the next tier answers
        raw = await sdk.chat.completions.with_raw_response.create(
            model="support-default",
            messages=ask("[[mock:faults@gpt-4o-mini=schema*]] which city now?"),
            response_format=schema_format)
        assert raw.headers["x-keystead-deployment"] == "mock/gpt-4o"
        content = raw.parse().choices[0].message.content
        assert content is not None and "city" in json.loads(content)

        # pass: handed over as it is, and said so
        raw = await sdk.chat.completions.with_raw_response.create(
            model="support-smart", messages=ask("[[mock:faults=schema*]] a city please"),
            response_format=schema_format)
        assert raw.headers["x-keystead-schema-valid"] == "false"  # nothing left to try
        record = await row(client, raw.headers["x-request-id"])
        assert record.schema_valid is False

        usage = await client.admin("GET", "/admin/usage?by=route&since=1d")
        routes = {r["group"]: r for r in usage.json()["rows"]}
        assert routes["single"]["schema_checked"] == 1
        assert routes["support-smart"]["schema_invalid"] == 1

    raw = routing_config(structured_output={"on_invalid": "fallback"})
    raw["routes"]["support-smart"]["structured_output"] = {"on_invalid": "pass"}
    run(tmp_path, test, raw)


def test_the_breaker_opens_and_the_route_skips_the_failing_deployment(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        for i in range(3):
            raw = await sdk.chat.completions.with_raw_response.create(
                model="support-default", messages=ask(f"hello {i}"))
            assert raw.headers["x-keystead-deployment"] == "backup/gpt-4o-mini"
        assert received(client, "primary") == 3
        assert client.runtime.breakers.state("primary/gpt-4o-mini").value == "open"
        for i in range(5):
            raw = await sdk.chat.completions.with_raw_response.create(
                model="support-default", messages=ask(f"fine {i}"))
            assert raw.headers["x-keystead-deployment"] == "backup/gpt-4o-mini"
            assert "x-keystead-attempts" not in raw.headers  # no time lost on the open one
        assert received(client, "primary") == 3

    run(tmp_path, test, routing_config("500*"))


def test_when_everything_fails_the_client_gets_the_last_answer(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        with pytest.raises(openai.InternalServerError) as failed:
            await sdk.chat.completions.create(
                model="support-default", messages=ask("[[mock:faults=503*]] anyone?"))
        response = failed.value.response
        assert response.status_code == 503
        assert response.headers["x-keystead-route"] == "support-default"
        record = await row(client, response.headers["x-request-id"])
        # 3 attempts on the route's two deployments, 3 on the fallback
        assert (record.status, record.attempts) == (503, 6)

        with pytest.raises(openai.UnprocessableEntityError):
            await sdk.chat.completions.create(
                model="support-default", messages=ask("[[mock:faults=422*]] bad"))
        assert received(client, "backup") == 1 + 0  # the 422 was not retried anywhere

    run(tmp_path, test)


def test_a_plain_model_name_is_not_retried_by_default(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        with pytest.raises(openai.InternalServerError):
            await sdk.chat.completions.create(
                model="gpt-4o-mini", messages=ask("[[mock:faults=500]] hi"))
        # and the next request works: no breaker stands between a model name and its provider
        reply = await sdk.chat.completions.create(model="gpt-4o-mini", messages=ask("hi"))
        assert reply.choices[0].message.content

    run(tmp_path, test, {"providers": {"mock": {"type": "mock", "models": MODELS}}})


# --- cache (P17) and degraded mode (P19) ----------------------------------------------------

def cached_config(**route: Any) -> dict[str, Any]:
    raw = routing_config()
    raw["routes"]["cached"] = {"retry": FAST_RETRY, "cache": {"ttl": "10m"},
                               "deployments": [{"provider": "primary",
                                                "model": "gpt-4o-mini"}], **route}
    return raw


async def team_key(client: AppClient, team: str, name: str) -> str:
    reply = await client.admin("POST", "/admin/teams", {"name": team})
    assert reply.status == 201, reply.body
    return await client.create_key(name, team=team)


def test_a_cached_answer_is_served_without_a_call_and_records_the_saving(
        tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        first = await sdk.chat.completions.with_raw_response.create(
            model="cached", messages=ask("what is a gateway?"))
        second = await sdk.chat.completions.with_raw_response.create(
            model="cached", messages=ask("what is a gateway?"))
        assert "x-keystead-cache" not in first.headers
        assert second.headers["x-keystead-cache"] == "hit"
        assert second.headers["x-keystead-cost-usd"] == "0"
        assert second.parse().choices[0].message.content == \
            first.parse().choices[0].message.content
        assert received(client, "primary") == 1
        miss = await row(client, first.headers["x-request-id"])
        hit = await row(client, second.headers["x-request-id"])
        assert (miss.cache, hit.cache) == ("miss", "hit")
        assert hit.cost_usd == 0 and hit.saved_usd == miss.cost_usd > 0

        # A streamed request is answered from the same entry, replayed as a stream the SDK
        # reads like any other (usage included when asked for).
        stream = await sdk.chat.completions.create(
            model="cached", messages=ask("what is a gateway?"), stream=True,
            stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == first.parse().choices[0].message.content
        assert chunks[-1].usage is not None
        assert received(client, "primary") == 1

        # A streamed miss is stored too, and a plain request then hits it.
        stream = await sdk.chat.completions.create(
            model="cached", messages=ask("and a stream?"), stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream
                            if c.choices])
        plain = await sdk.chat.completions.with_raw_response.create(
            model="cached", messages=ask("and a stream?"))
        assert plain.headers["x-keystead-cache"] == "hit"
        assert plain.parse().choices[0].message.content == streamed

        # Other parameters, another answer.
        other = await sdk.chat.completions.with_raw_response.create(
            model="cached", messages=ask("what is a gateway?"), temperature=0.2)
        assert "x-keystead-cache" not in other.headers

    run(tmp_path, test, cached_config())


def test_the_cache_is_per_team_and_obeys_cache_control(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        alpha = sdk.with_options(api_key=await team_key(client, "alpha", "dev-alpha-app"))
        beta = sdk.with_options(api_key=await team_key(client, "beta", "dev-beta-app"))
        await alpha.chat.completions.create(model="cached", messages=ask("tenant?"))
        hit = await alpha.chat.completions.with_raw_response.create(
            model="cached", messages=ask("tenant?"))
        assert hit.headers["x-keystead-cache"] == "hit"
        other_team = await beta.chat.completions.with_raw_response.create(
            model="cached", messages=ask("tenant?"))
        assert "x-keystead-cache" not in other_team.headers
        assert received(client, "primary") == 2

        fresh = await alpha.chat.completions.with_raw_response.create(
            model="cached", messages=ask("tenant?"), extra_headers={"cache-control": "no-cache"})
        assert "x-keystead-cache" not in fresh.headers and received(client, "primary") == 3
        await alpha.chat.completions.create(
            model="cached", messages=ask("secret"), extra_headers={"cache-control": "no-store"})
        again = await alpha.chat.completions.with_raw_response.create(
            model="cached", messages=ask("secret"))
        assert "x-keystead-cache" not in again.headers  # no-store kept nothing

    run(tmp_path, test, cached_config())


def test_degraded_mode_serves_a_stale_answer_else_the_static_reply(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        prompt = ask("[[mock:faults=ok,503*]] status of my order?")
        first = await sdk.chat.completions.create(model="cached", messages=prompt)
        # The provider now fails every time; the client skips the fresh cache, so the route
        # calls, fails, and answers from the cache in degraded mode.
        degraded = await sdk.chat.completions.with_raw_response.create(
            model="cached", messages=prompt, extra_headers={"cache-control": "no-cache"})
        assert degraded.headers["x-keystead-degraded"] == "cached"
        assert degraded.parse().choices[0].message.content == first.choices[0].message.content
        record = await row(client, degraded.headers["x-request-id"])
        assert (record.status, record.degraded, record.attempts) == (200, "cached", 3)

        # Nothing cached for this one: the static reply.
        static = await sdk.chat.completions.with_raw_response.create(
            model="cached", messages=ask("[[mock:faults=503*]] anything new?"))
        assert static.headers["x-keystead-degraded"] == "static"
        assert static.parse().choices[0].message.content == "We are busy; try again soon."
        stream = await sdk.chat.completions.create(
            model="cached", messages=ask("[[mock:faults=503*]] a stream?"), stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "We are busy; try again soon."

    run(tmp_path, test, cached_config(
        fallbacks=[], degraded={"static_reply": "We are busy; try again soon."}))


def test_degraded_mode_never_hides_a_request_refused_as_the_clients_fault(
        tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        with pytest.raises(openai.BadRequestError):
            await sdk.chat.completions.create(
                model="cached", messages=ask("[[mock:faults=400*]] bad request"))
        with pytest.raises(openai.BadRequestError) as overflow:
            await sdk.chat.completions.create(
                model="cached", messages=ask("[[mock:faults=context*]] too long"))
        assert overflow.value.code == "context_length_exceeded"
        assert received(client, "primary") == 2  # neither was retried

    run(tmp_path, test, cached_config(
        fallbacks=[], degraded={"static_reply": "We are busy; try again soon."}))


def test_a_route_with_every_deployment_behind_open_breakers_is_503(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        # Three attempts, three failures: primary's breaker opens (no fallback, no other
        # deployment), and the client gets the provider's last 500.
        with pytest.raises(openai.InternalServerError) as failed:
            await sdk.chat.completions.create(model="single", messages=ask("x"))
        assert failed.value.status_code == 500
        with pytest.raises(openai.APIStatusError) as refused:
            await sdk.chat.completions.create(model="single", messages=ask("and now?"))
        assert refused.value.status_code == 503
        assert refused.value.code == "route_unavailable"
        assert refused.value.response.headers["retry-after"] == "1"
        assert received(client, "primary") == 3  # nothing was sent for the second request

    run(tmp_path, test, routing_config("500*"))


def test_a_redis_cache_is_shared_by_two_gateways(tmp_path: Path) -> None:
    """routing.cache_backend: redis: an answer stored through one gateway is a hit on another
    (replicas share the cache, as they share limits and breakers)."""
    from redis_support import REDIS_URL, delete_prefix, fresh_prefix, require_redis

    require_redis()
    prefix = fresh_prefix()
    raw = cached_config()
    raw["redis"] = {"url": REDIS_URL, "prefix": prefix}
    raw["routing"] = {**raw["routing"], "cache_backend": "redis"}

    async def main() -> None:
        loaded = make_loaded(tmp_path, raw)
        try:
            async with running_app(loaded) as one, running_app(loaded) as two:
                key = await one.create_key()
                body = {"model": "cached", "messages": ask("shared between replicas?")}
                first = await one.request("POST", "/v1/chat/completions", key=key,
                                          json_body=body)
                assert first.status == 200 and "x-keystead-cache" not in first.headers
                for _ in range(50):  # the key reaches the second gateway within its poll
                    second = await two.request("POST", "/v1/chat/completions", key=key,
                                               json_body=body)
                    if second.status != 401:
                        break
                    await asyncio.sleep(0.05)
                assert second.status == 200, second.body
                assert second.headers["x-keystead-cache"] == "hit"
                assert second.json()["choices"] == first.json()["choices"]
                assert received(two, "primary") == 0
        finally:
            await delete_prefix(prefix)

    asyncio.run(main())


def test_a_deployment_quota_sends_the_overflow_to_the_next_deployment(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        served = []
        for i in range(5):
            raw = await sdk.chat.completions.with_raw_response.create(
                model="support-default", messages=ask(f"quota {i}"))
            served.append(raw.headers["x-keystead-deployment"])
            assert "x-keystead-attempts" not in raw.headers  # skipped, not tried and failed
        assert served == ["primary/gpt-4o-mini"] * 3 + ["backup/gpt-4o-mini"] * 2

    raw = routing_config()
    raw["routes"]["support-default"]["deployments"][0]["rpm"] = 3
    run(tmp_path, test, raw)


def test_a_prompt_too_long_for_a_deployment_skips_it_before_the_call(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        short = await sdk.chat.completions.with_raw_response.create(
            model="tiny", messages=ask("hi"), max_tokens=10)
        assert short.headers["x-keystead-deployment"] == "primary/gpt-4o-mini"
        long_prompt = " ".join(["word"] * 300)  # ~300 tokens: over the 200-token window
        long = await sdk.chat.completions.with_raw_response.create(
            model="tiny", messages=ask(long_prompt), max_tokens=10)
        assert long.headers["x-keystead-deployment"] == "mock/gpt-4o"
        assert long.headers["x-keystead-fallback"] == "true"
        assert received(client, "primary") == 1  # the long one never reached it

    raw = routing_config()
    raw["routes"]["tiny"] = {"retry": FAST_RETRY, "fallbacks": ["support-smart"],
                             "deployments": [{"provider": "primary", "model": "gpt-4o-mini",
                                              "context_window": 200}]}
    run(tmp_path, test, raw)
