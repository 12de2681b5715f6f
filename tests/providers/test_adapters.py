"""One conformance suite over every provider adapter (STYLE: TensorZero's capability matrix).

Each adapter talks to the built-in mock upstream through the in-process ASGI transport, with
the mock demanding the provider key, so the suite checks what each adapter puts on the wire
(URL, auth header, query) and that the declared capabilities hold. An adapter that does not
support a capability declares it; the suite then checks the declaration, not a failure.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest

from keystead.mocks.openai_upstream import MockSettings, MockUpstream, create_mock_app
from keystead.providers.base import Endpoint, Provider
from keystead.providers.registry import ProviderSpec, build_provider
from keystead.providers.transport import ASGITransport

PROVIDER_KEY = "sk-provider-secret-for-tests"
CHAT = json.dumps({"model": "gpt-4o-mini",
                   "messages": [{"role": "user", "content": "hi [[mock:tokens=3]]"}]}).encode()
STREAM = json.dumps({"model": "gpt-4o-mini", "stream": True,
                     "stream_options": {"include_usage": True},
                     "messages": [{"role": "user", "content": "hi [[mock:tokens=3]]"}]}).encode()
EMBED = json.dumps({"model": "text-embedding-3-small", "input": "hello",
                    "encoding_format": "float"}).encode()
RESPOND = json.dumps({"model": "gpt-4o-mini", "input": "hello"}).encode()


@dataclass(frozen=True)
class Case:
    """What one adapter must do. Every field is explicit: no defaults to forget."""

    spec: ProviderSpec
    auth_header: str  # the header that must carry the provider key
    auth_value: str
    chat_path: str
    query: str
    responses: bool
    list_models: bool


CASES = {
    "openai": Case(
        ProviderSpec(name="openai", type="openai", base_url="http://up/v1", source="config",
                     models=("gpt-4o-mini",)),
        "authorization", f"Bearer {PROVIDER_KEY}", "/v1/chat/completions", "", True, True),
    "azure": Case(
        ProviderSpec(name="azure", type="azure", base_url="http://up", source="config",
                     models=("gpt-4o-mini",), deployments={"gpt-4o-mini": "prod-mini"},
                     api_version="2024-10-21"),
        "api-key", PROVIDER_KEY, "/openai/deployments/prod-mini/chat/completions",
        "api-version=2024-10-21", False, False),
    "openai-compatible": Case(
        ProviderSpec(name="vllm", type="openai-compatible", base_url="http://up/v1",
                     source="config", models=("gpt-4o-mini",)),
        "authorization", f"Bearer {PROVIDER_KEY}", "/v1/chat/completions", "", False, True),
    "openai-compatible-responses": Case(
        ProviderSpec(name="vllm2", type="openai-compatible", base_url="http://up/v1",
                     source="config", models=("gpt-4o-mini",), supports_responses=True),
        "authorization", f"Bearer {PROVIDER_KEY}", "/v1/chat/completions", "", True, True),
}


def make(case: Case) -> tuple[Provider, MockUpstream]:
    mock = create_mock_app(MockSettings(api_key=PROVIDER_KEY))
    provider = build_provider(case.spec, PROVIDER_KEY, ASGITransport(mock), read_timeout=10)
    return provider, mock


async def call(provider: Provider, endpoint: Endpoint, model: str, body: bytes | None,
               stream: bool = False) -> tuple[int, bytes]:
    response = await provider.send(endpoint, model, body, stream=stream)
    return response.status, await response.read()


@pytest.mark.parametrize("name", sorted(CASES))
def test_chat_reaches_the_right_url_with_the_provider_key(name: str) -> None:
    case = CASES[name]
    provider, mock = make(case)
    status, body = asyncio.run(call(provider, Endpoint.CHAT, "gpt-4o-mini", CHAT))
    assert status == 200, body
    assert json.loads(body)["usage"]["completion_tokens"] == 3
    sent = mock.received[-1]
    assert sent.path == case.chat_path
    assert sent.query == case.query
    assert sent.headers[case.auth_header] == case.auth_value
    assert sent.body == CHAT  # the client's bytes, untouched


@pytest.mark.parametrize("name", sorted(CASES))
def test_streaming_passes_events_with_usage(name: str) -> None:
    provider, _ = make(CASES[name])

    async def run() -> list[bytes]:
        response = await provider.send(Endpoint.CHAT, "gpt-4o-mini", STREAM, stream=True)
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [chunk async for chunk in response.iter_chunks()]

    text = b"".join(asyncio.run(run()))
    assert text.endswith(b"data: [DONE]\n\n")
    assert b'"usage":{"prompt_tokens"' in text


@pytest.mark.parametrize("name", sorted(CASES))
def test_embeddings(name: str) -> None:
    provider, mock = make(CASES[name])
    status, body = asyncio.run(call(provider, Endpoint.EMBEDDINGS, "text-embedding-3-small",
                                    EMBED))
    assert status == 200
    assert len(json.loads(body)["data"][0]["embedding"]) == 1536
    assert mock.received[-1].path.endswith("/embeddings")


@pytest.mark.parametrize("name", sorted(CASES))
def test_responses_capability_is_declared_and_holds(name: str) -> None:
    case = CASES[name]
    provider, mock = make(case)
    assert provider.capabilities.supports(Endpoint.RESPONSES) is case.responses
    if case.responses:
        status, body = asyncio.run(call(provider, Endpoint.RESPONSES, "gpt-4o-mini", RESPOND))
        assert status == 200 and json.loads(body)["object"] == "response"
        assert mock.received[-1].path.endswith("/responses")


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_listing_capability_is_declared_and_holds(name: str) -> None:
    case = CASES[name]
    provider, _ = make(case)
    assert provider.capabilities.supports(Endpoint.MODELS) is case.list_models
    if case.list_models:
        status, body = asyncio.run(call(provider, Endpoint.MODELS, "", None))
        assert status == 200 and json.loads(body)["object"] == "list"


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_wrong_provider_key_is_refused_by_the_provider(name: str) -> None:
    case = CASES[name]
    mock = create_mock_app(MockSettings(api_key="the-right-one"))
    provider = build_provider(case.spec, PROVIDER_KEY, ASGITransport(mock), read_timeout=10)
    status, body = asyncio.run(call(provider, Endpoint.CHAT, "gpt-4o-mini", CHAT))
    assert status == 401
    assert json.loads(body)["error"]["code"] == "invalid_api_key"


def test_azure_without_a_mapping_uses_the_model_name_as_deployment() -> None:
    spec = ProviderSpec(name="az", type="azure", base_url="http://up", source="config",
                        models=("gpt-4o",))
    provider = build_provider(spec, PROVIDER_KEY, ASGITransport(create_mock_app(MockSettings())),
                              read_timeout=10)
    url, headers = provider.request_target(Endpoint.CHAT, "gpt-4o", PROVIDER_KEY)
    assert url == "http://up/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    assert headers == {"api-key": PROVIDER_KEY}


def test_the_built_in_mock_provider_runs_in_process() -> None:
    spec = ProviderSpec(name="mock", type="mock", base_url=None, source="config")
    provider = build_provider(spec, None, ASGITransport(object()), read_timeout=10)
    assert provider.type == "mock"
    assert isinstance(provider.transport, ASGITransport)
    assert isinstance(provider.transport.app, MockUpstream)
    status, _ = asyncio.run(call(provider, Endpoint.CHAT, "gpt-4o-mini", CHAT))
    assert status == 200


def test_repr_never_shows_the_provider_key() -> None:
    for case in CASES.values():
        provider, _ = make(case)
        assert PROVIDER_KEY not in repr(provider)
