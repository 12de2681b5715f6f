"""Model names never walk a provider's URL: every adapter refuses a name that cannot be a model
name before anything is sent, the one name that goes into a URL path (Azure's deployment) is
escaped as one segment, and what reaches a real HTTP server (through aiohttp and yarl, which
resolve `..` and `%2E%2E`) is checked on the wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from keystead.errors import InvalidField
from keystead.providers.base import Endpoint, Provider
from keystead.providers.names import check_model, path_segment
from keystead.providers.registry import ProviderSpec, build_provider
from keystead.providers.transport import HttpTransport, UpstreamResponse
from support import make_loaded, running_app, serving_http

KEY = "sk-provider-key-for-name-tests-0123456789"
# What the attack used, and its cousins: each must stay out of every URL.
HOSTILE = [
    "gpt-4o-x/../../expensive-dep/chat/completions?x=",
    "%2e%2e/expensive-dep",
    "%2E%2E",
    "..",
    ".",
    "x/..",
    "../x",
    "gpt-4o?api-version=1",
    "gpt-4o#frag",
    "gpt 4o",
    "gpt-4o-é",
    "gpt-4o\u202e",  # right-to-left override
    "gpt-4o\x00",
    "gpt-4o\r\nx-injected: 1",
    "",
    "a" * 257,
]
# Real names of real providers: all accepted.
REAL = ["gpt-4o-mini", "ft:gpt-4o-mini-2024-07-18:acme::9abc", "meta-llama/Llama-3.1-8B",
        "claude-3-5-sonnet-v2@20241022", "llama3.1:8b-instruct-q4_K_M",
        "~anthropic/claude-sonnet-latest", "accounts/fireworks/models/llama-v3p1-8b-instruct",
        "/models/llama", "models/gemini-2.0-flash", "openai/gpt-4o:online", "gpt-3.5-turbo"]

SPECS = {
    "openai": ProviderSpec(name="openai", type="openai", base_url="http://up/v1",
                           source="config", models=("*",)),
    "azure": ProviderSpec(name="azure", type="azure", base_url="http://up", source="config",
                          models=("*",), api_version="2024-10-21"),
    "openai-compatible": ProviderSpec(name="vllm", type="openai-compatible",
                                      base_url="http://up/v1", source="config", models=("*",)),
    "gemini": ProviderSpec(name="gemini", type="gemini",
                           base_url="https://generativelanguage.googleapis.com/v1beta/openai",
                           source="config", models=("*",)),
    "anthropic": ProviderSpec(name="anthropic", type="anthropic",
                              base_url="https://api.anthropic.com", source="config",
                              models=("*",)),
}
# The one path each adapter may call for a chat, whatever the model.
CHAT_PATHS = {"openai": "/v1/chat/completions", "openai-compatible": "/v1/chat/completions",
              "gemini": "/v1beta/openai/chat/completions", "anthropic": "/v1/messages"}


class _Reply:
    status = 200
    headers: dict[str, str] = {"content-type": "application/json"}

    async def read(self) -> bytes:
        return b"{}"

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        yield b"{}"

    def abort(self) -> None:
        pass

    def release(self) -> None:
        pass


class Recorder:
    """A transport that records every URL it is asked to call."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                   *, read_timeout: float, what: str) -> UpstreamResponse:
        self.urls.append(url)
        return _Reply()

    async def close(self) -> None:
        pass


def adapter(kind: str) -> tuple[Provider, Recorder]:
    recorder = Recorder()
    return build_provider(SPECS[kind], KEY, recorder, read_timeout=5), recorder


def chat_body(model: str) -> bytes:
    return json.dumps({"model": model, "max_tokens": 5,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.mark.parametrize("kind", sorted(SPECS))
@pytest.mark.parametrize("model", HOSTILE)
def test_every_adapter_refuses_a_hostile_name_before_sending(kind: str, model: str) -> None:
    provider, recorder = adapter(kind)
    for endpoint in (Endpoint.CHAT, Endpoint.EMBEDDINGS):
        with pytest.raises(InvalidField) as refused:
            asyncio.run(provider.send(endpoint, model, chat_body(model), stream=False))
        assert refused.value.code == "invalid_model_name" and refused.value.param == "model"
        assert refused.value.status == 400
        # The message quotes the name escaped and cut short: no control character, no CRLF.
        assert "\x00" not in refused.value.message and "\r\n" not in refused.value.message
        assert len(refused.value.message) < 400
    assert recorder.urls == []


@pytest.mark.parametrize("kind", sorted(CHAT_PATHS))
@pytest.mark.parametrize("model", REAL)
def test_a_real_name_goes_in_the_body_and_the_url_stays_fixed(kind: str, model: str) -> None:
    provider, recorder = adapter(kind)
    asyncio.run(provider.send(Endpoint.CHAT, model, chat_body(model), stream=False))
    (url,) = recorder.urls
    assert URL(url).path == CHAT_PATHS[kind] and URL(url).raw_path == CHAT_PATHS[kind]


def test_azure_puts_a_real_deployment_in_one_segment() -> None:
    provider, recorder = adapter("azure")
    for model in ("gpt-4o-mini", "gpt-35-turbo", "prod.mini_2"):
        asyncio.run(provider.send(Endpoint.CHAT, model, chat_body(model), stream=False))
    assert [URL(u).raw_path for u in recorder.urls] == [
        f"/openai/deployments/{m}/chat/completions"
        for m in ("gpt-4o-mini", "gpt-35-turbo", "prod.mini_2")]
    assert {URL(u).query_string for u in recorder.urls} == {"api-version=2024-10-21"}


@pytest.mark.parametrize("model", [*HOSTILE, "meta-llama/Llama-3.1-8B", "ft:gpt-4o:acme::1"])
def test_azures_url_builder_is_safe_whatever_it_is_given(model: str) -> None:
    """Called directly (no `send` in front): a name that is not a deployment name is refused;
    nothing else ever leaves the deployments/<one segment>/ shape."""
    provider, _ = adapter("azure")
    with pytest.raises(InvalidField, match="deployment"):
        provider.request_target(Endpoint.CHAT, model, KEY)


def test_an_azure_mapping_to_a_hostile_deployment_is_refused() -> None:
    spec = ProviderSpec(name="az", type="azure", base_url="http://up", source="config",
                        models=("gpt-4o",), deployments={"gpt-4o": "../expensive-dep"},
                        api_version="2024-10-21&x=1#y")
    recorder = Recorder()
    provider = build_provider(spec, KEY, recorder, read_timeout=5)
    with pytest.raises(InvalidField, match="deployment"):
        asyncio.run(provider.send(Endpoint.CHAT, "gpt-4o", chat_body("gpt-4o"), stream=False))
    assert recorder.urls == []
    url, _ = provider.request_target(Endpoint.MODELS, "", KEY)
    assert URL(url).query == {"api-version": "2024-10-21&x=1#y"}  # one value, escaped


@pytest.mark.parametrize("value", ["a/b", "../x", "a?b=1", "a#b", "a%2e%2e", "a b", "é",
                                   "a\x00b", "%2E%2E"])
def test_a_path_segment_is_one_segment(value: str) -> None:
    segment = path_segment(value, "p")
    assert "/" not in segment and "?" not in segment and "#" not in segment
    url = URL(f"http://up/base/{segment}/tail")  # as aiohttp parses what it is given
    assert url.raw_parts[1:] == ("base", url.raw_parts[2], "tail") and len(url.raw_parts) == 4
    assert url.parts[2] == value  # the one segment is the whole name


@pytest.mark.parametrize("value", ["", ".", ".."])
def test_dot_segments_are_refused_because_no_escaping_makes_them_safe(value: str) -> None:
    with pytest.raises(InvalidField):
        path_segment(value, "p")
    # Why: yarl (and so aiohttp) resolves the escaped form too.
    assert URL("http://up/a/%2E%2E/b").path == "/b"


def test_check_model_accepts_real_names() -> None:
    for model in REAL:
        assert check_model(model, "p") == model


def test_what_reaches_a_real_server_is_one_segment() -> None:
    """Through HttpTransport (aiohttp, yarl) to a real socket: the escaped segment arrives
    whole, never resolved into another path."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({})

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        async with serving_http(app) as base:
            http = HttpTransport()
            try:
                for value in ("a/../../expensive", "%2e%2e", "x?y#z", "é b"):
                    response = await http.send(
                        "GET", f"{base}/openai/deployments/{path_segment(value, 'p')}/chat",
                        {}, None, read_timeout=5, what="t")
                    await response.read()
            finally:
                await http.close()

    asyncio.run(main())
    assert [p.split("/")[:3] for p in seen] == [["", "openai", "deployments"]] * 4
    assert all(p.endswith("/chat") and p.count("/") == 4 for p in seen), seen


def test_the_gateway_answers_400_and_azure_hears_nothing(tmp_path: Path) -> None:
    """The attack of issue 13 through the whole gateway: a client names a model that walks the
    Azure deployment path; before the fix `/openai/expensive-dep/chat/completions` was called
    with the gateway's api-key."""
    paths: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        paths.append(request.raw_path)
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    async def main() -> list[dict[str, Any]]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        async with serving_http(app) as base:
            providers = {"az": {"type": "azure", "base_url": base, "api_key": "${AZ_KEY}",
                                "models": ["gpt-4o*"]}}
            loaded = make_loaded(tmp_path, {"providers": providers}, env={"AZ_KEY": KEY})
            async with running_app(loaded) as client:
                key = await client.create_key("prod-names-test")
                ok = await client.request("POST", "/v1/chat/completions", key=key,
                                          json_body={"model": "gpt-4o-x", "messages": [
                                              {"role": "user", "content": "hi"}]})
                assert ok.status == 200, ok.body
                errors = []
                for model in ("gpt-4o-x/../../expensive-dep/chat/completions?x=",
                              "gpt-4o-x/%2e%2e/%2e%2e/expensive-dep", "gpt-4o-x#y"):
                    for stream in (False, True):
                        reply = await client.request(
                            "POST", "/v1/chat/completions", key=key,
                            json_body={"model": model, "stream": stream, "messages": [
                                {"role": "user", "content": "hi"}]})
                        assert reply.status == 400, reply.body
                        errors.append(reply.json()["error"])
                return errors

    errors = asyncio.run(main())
    assert paths == ["/openai/deployments/gpt-4o-x/chat/completions?api-version=2024-10-21"]
    assert {e["param"] for e in errors} == {"model"}
