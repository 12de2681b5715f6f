"""Scripted faults in the mock upstream: the n-th attempt of the same request gets the n-th step.

The parser and the attempt counter are checked directly; every step is then driven through the
mock app in process (ASGI), and the ones about sockets (reset, stall) over real HTTP too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jsonschema
import pytest
from pydantic import ValidationError

from keystead.config.providers import MockConfig
from keystead.errors import UpstreamUnreachable
from keystead.mocks.faults import (
    OK,
    FaultScripts,
    FaultSpecError,
    FaultStep,
    parse_faults,
    step_at,
)
from keystead.mocks.openai_upstream import (
    MockDisconnect,
    MockReset,
    MockSettings,
    MockUpstream,
    create_mock_app,
    serve_mock,
)
from keystead.mocks.structured import violating_instance
from keystead.providers.base import Endpoint
from keystead.providers.registry import ProviderSpec, build_provider
from keystead.providers.transport import ASGITransport
from openapi_schemas import validate

# --- the parser -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "steps"),
    [
        ("ok", (OK,)),
        (
            "429:retry_ms=1500,500,ok",
            (
                FaultStep("status", status=429, retry_after_ms=1500),
                FaultStep("status", status=500),
                OK,
            ),
        ),
        ("429:retry=3", (FaultStep("status", status=429, retry_after=3),)),
        (
            "503:retry=2:retry_ms=1500",
            (FaultStep("status", status=503, retry_after=2, retry_after_ms=1500),),
        ),
        ("500*3, ok", (FaultStep("status", status=500, times=3), OK)),
        ("ok,500*", (OK, FaultStep("status", status=500, times=None))),
        (
            " Slow=250 , stall=1.5 ",
            (FaultStep("slow", delay_ms=250), FaultStep("stall", delay_ms=1.5)),
        ),
        ("reset,reset=2*2", (FaultStep("reset"), FaultStep("reset", after_chunks=2, times=2))),
        (
            "badjson,context,schema",
            (FaultStep("badjson"), FaultStep("context"), FaultStep("schema")),
        ),
    ],
)
def test_parse_faults(spec: str, steps: tuple[FaultStep, ...]) -> None:
    assert parse_faults(spec) == steps


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("", "step 1 '': empty step"),
        ("500,,ok", "step 2 '': empty step"),
        ("boom", "step 1 'boom': unknown step"),
        ("600", "between 400 and 599"),
        ("399", "between 400 and 599"),
        ("500=3", "a status takes no =value"),
        ("404:retry=3", "only 429 and 503"),
        ("429:wait=3", "unknown or repeated status option 'wait'"),
        ("429:retry=1:retry=2", "repeated"),
        ("429:retry=soon", "retry= needs a whole number"),
        ("slow", "slow=MS needs a number of milliseconds"),
        ("stall=-5", "stall=MS needs a number of milliseconds"),
        ("slow=nan", "slow=MS"),
        ("reset=", "reset=K needs a whole number"),
        ("reset=-1", "reset=K needs a whole number"),
        ("ok=1", "ok takes no =value"),
        ("500*0", "*N needs a whole number >= 1"),
        ("500*x", "*N needs a whole number >= 1"),
        ("*3", "empty step"),
        ("500*,ok", "repeated forever (*) must be the last one"),
    ],
)
def test_parse_faults_refuses_bad_steps_saying_which(spec: str, complaint: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        parse_faults(spec)
    message = str(info.value)
    assert complaint in message
    assert repr(spec) in message
    assert "badjson, context or schema" in message  # the grammar, to fix it by
    assert isinstance(info.value, ValueError)


def test_lenient_parsing_turns_bad_steps_into_ok_in_place() -> None:
    assert parse_faults("boom,500*x,503,500*,ok", strict=False) == (
        OK,
        OK,
        FaultStep("status", status=503),
        FaultStep("status", status=500, times=None),
        OK,
    )
    assert parse_faults("", strict=False) == (OK,)


def test_step_at_walks_repeats_and_ends() -> None:
    steps = parse_faults("500*2,slow=5,ok")
    assert [step_at(steps, i) for i in range(5)] == [steps[0], steps[0], steps[1], steps[2], None]
    forever = parse_faults("ok,503*")
    assert step_at(forever, 10_000) == forever[1]


def test_retry_headers() -> None:
    assert FaultStep("status", status=429).retry_headers() is None  # the status's default
    assert FaultStep("status", status=429, retry_after=3).retry_headers() == [
        (b"retry-after", b"3")
    ]
    assert FaultStep("status", status=429, retry_after_ms=1500).retry_headers() == [
        (b"retry-after-ms", b"1500"),
        (b"retry-after", b"2"),
    ]


def test_fault_scripts_count_per_spec_and_model_and_forget_the_oldest() -> None:
    scripts = FaultScripts(limit=2)
    assert scripts.next_step("500,ok", "a") == FaultStep("status", status=500)
    assert scripts.next_step("500,ok", "b") == FaultStep("status", status=500)  # another model
    assert scripts.next_step("500,ok", "a") == OK
    assert scripts.next_step("500,ok", "a") is None  # used up: answer normally
    assert len(scripts) == 2
    scripts.next_step("503", "c")  # a third script: ("500,ok", "b") was unused the longest
    assert len(scripts) == 2
    assert scripts.next_step("500,ok", "b") == FaultStep("status", status=500)  # from the start
    assert scripts.next_step("boom,503", "a") == OK  # lenient: unknown steps are ok


# --- a tiny ASGI client that also tells when each message was sent ----------------------------


@dataclass
class Sent:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raised: BaseException | None = None
    started_at: float = 0.0  # seconds after the call, for http.response.start
    first_body_at: float | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    def data(self) -> list[str]:
        """The `data:` payloads of the SSE frames."""
        return [
            line.removeprefix("data: ")
            for frame in self.body.decode().split("\n\n")
            for line in frame.split("\n")
            if line.startswith("data: ")
        ]

    def error(self, status: int) -> dict[str, Any]:
        assert self.status == status, self.body
        validate(self.json(), "ErrorResponse")
        return dict(self.json()["error"])


async def _asgi(app: MockUpstream, path: str, payload: dict[str, Any]) -> Sent:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("mock", 80),
    }
    incoming = [{"type": "http.request", "body": json.dumps(payload).encode()}]
    sent = Sent()
    begun = time.perf_counter()

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        now = time.perf_counter() - begun
        if message["type"] == "http.response.start":
            sent.status, sent.started_at = message["status"], now
            sent.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message.get("body"):
            sent.first_body_at = now if sent.first_body_at is None else sent.first_body_at
            sent.body += message["body"]

    try:
        await app(scope, receive, send)
    except MockDisconnect as exc:
        sent.raised = exc
    return sent


def post(app: MockUpstream, path: str, payload: dict[str, Any]) -> Sent:
    return asyncio.run(_asgi(app, path, payload))


def chat(app: MockUpstream, text: str, model: str = "gpt-4o-mini", **extra: Any) -> Sent:
    payload = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return post(app, "/v1/chat/completions", payload)


def chat_payload(text: str, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def app() -> MockUpstream:
    return create_mock_app(MockSettings())


# --- statuses, scopes, repetition -------------------------------------------------------------


def test_identical_requests_walk_the_script(app: MockUpstream) -> None:
    text = "hello [[mock:faults=429:retry_ms=1500,500,ok]]"
    first, second, third, fourth = (chat(app, text) for _ in range(4))
    error = first.error(429)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert first.headers["retry-after-ms"] == "1500"
    assert first.headers["retry-after"] == "2"
    assert second.error(500)["type"] == "server_error"
    assert "retry-after" not in second.headers
    assert third.status == 200
    assert fourth.status == 200  # used up: normal answers from now on
    content = third.json()["choices"][0]["message"]["content"]
    assert content.startswith("This is a mock reply to: hello lorem")  # directive not echoed


def test_retry_hints(app: MockUpstream) -> None:
    plain = chat(app, "[[mock:faults=429]]")
    assert plain.headers["retry-after"] == "1"
    assert "retry-after-ms" not in plain.headers
    seconds = chat(app, "[[mock:faults=429:retry=3]]")
    assert seconds.headers["retry-after"] == "3"
    assert "retry-after-ms" not in seconds.headers
    unavailable = chat(app, "[[mock:faults=503:retry_ms=250]]")
    unavailable.error(503)
    assert (unavailable.headers["retry-after-ms"], unavailable.headers["retry-after"]) == (
        "250",
        "1",
    )
    assert "retry-after" not in chat(app, "[[mock:faults=503]]").headers


def test_repeat_n_times_and_forever(app: MockUpstream) -> None:
    assert [chat(app, "[[mock:faults=500*2,ok]]").status for _ in range(4)] == [500, 500, 200, 200]
    assert [chat(app, "[[mock:faults=503*]]").status for _ in range(6)] == [503] * 6


def test_model_scoped_scripts(app: MockUpstream) -> None:
    text = "[[mock:faults@gpt-4o=500*]] hi [[mock:faults@gpt-4o-mini=429,ok]]"
    assert [chat(app, text, "gpt-4o").status for _ in range(3)] == [500, 500, 500]
    assert [chat(app, text, "gpt-4o-mini").status for _ in range(3)] == [429, 200, 200]
    assert chat(app, text, "gpt-4.1").status == 200  # no script for this model
    body = chat(app, text, "gpt-4.1").json()
    assert body["choices"][0]["message"]["content"].startswith("This is a mock reply to: hi ")
    # A script scoped to the model beats an unscoped one, wherever each sits.
    both = "[[mock:faults@gpt-4o=503]] [[mock:faults=400]]"
    assert chat(app, both, "gpt-4o").status == 503
    assert chat(app, both, "gpt-4o-mini").status == 400
    # Azure: the deployment in the path is the model.
    azure = {"messages": [{"role": "user", "content": "[[mock:faults@prod-mini=502]]"}]}
    assert post(app, "/openai/deployments/prod-mini/chat/completions", azure).status == 502
    assert post(app, "/openai/deployments/other/chat/completions", azure).status == 200


def test_attempts_are_counted_per_app_spec_and_model(app: MockUpstream) -> None:
    assert chat(app, "[[mock:faults=500,ok]] one").status == 500
    assert chat(app, "[[mock:faults=500,ok]] two").status == 200  # same script text
    assert chat(app, "[[mock:faults=500,ok]]", "gpt-4o").status == 500  # another model
    assert chat(app, "[[mock:faults=500, ok]]").status == 500  # another script text
    assert chat(create_mock_app(MockSettings()), "[[mock:faults=500,ok]]").status == 500


def test_unknown_steps_count_as_ok(app: MockUpstream) -> None:
    assert [chat(app, "[[mock:faults=boom,500]]").status for _ in range(3)] == [200, 500, 200]


def test_embeddings_and_responses_take_scripts_too(app: MockUpstream) -> None:
    embed = {"model": "text-embedding-3-small", "input": ["a", "b [[mock:faults=500,ok]]"]}
    assert [post(app, "/v1/embeddings", embed).status for _ in range(2)] == [500, 200]
    respond = {"model": "gpt-4o-mini", "input": "[[mock:faults=429*2]]"}
    assert [post(app, "/v1/responses", respond).status for _ in range(3)] == [429, 429, 200]


# --- time: slow and stall ---------------------------------------------------------------------


def test_slow_delays_then_answers(app: MockUpstream) -> None:
    started = time.perf_counter()
    slow = chat(app, "[[mock:faults=slow=100]]")
    assert time.perf_counter() - started >= 0.1
    assert slow.status == 200
    started = time.perf_counter()
    assert chat(app, "[[mock:faults=slow=100]]").status == 200  # used up: no delay
    assert time.perf_counter() - started < 0.1


def test_stall_starts_the_stream_then_waits(app: MockUpstream) -> None:
    stalled = chat(app, "[[mock:faults=stall=100]]", stream=True)
    assert stalled.status == 200
    assert stalled.headers["content-type"] == "text/event-stream"
    assert stalled.started_at < 0.05
    assert stalled.first_body_at is not None
    assert stalled.first_body_at >= 0.1
    assert stalled.data()[-1] == "[DONE]"
    plain = chat(app, "[[mock:faults=stall=100]]", "gpt-4o")  # not streaming: like slow
    assert plain.status == 200
    assert plain.started_at >= 0.1


# --- dropped connections ----------------------------------------------------------------------


def test_reset_drops_before_answering(app: MockUpstream) -> None:
    for reply in (
        chat(app, "[[mock:faults=reset]]"),
        chat(app, "[[mock:faults=reset]]", "gpt-4o", stream=True),
        chat(app, "[[mock:faults=reset=2]]"),  # not streaming: plain reset
    ):
        assert isinstance(reply.raised, MockReset)
        assert reply.status is None
        assert reply.body == b""
    assert chat(app, "[[mock:faults=reset]]").status == 200


def test_reset_after_k_chunks_of_a_stream(app: MockUpstream) -> None:
    reply = chat(app, "[[mock:faults=reset=2]]", stream=True)
    assert reply.status == 200
    assert isinstance(reply.raised, MockDisconnect)
    assert not isinstance(reply.raised, MockReset)
    chunks = [json.loads(data) for data in reply.data()]  # all JSON: no [DONE]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "This", " is"]
    assert chat(app, "[[mock:faults=reset=2]]", stream=True).data()[-1] == "[DONE]"
    respond = {"model": "gpt-4o-mini", "input": "[[mock:faults=reset=1]]", "stream": True}
    events = [json.loads(data) for data in post(app, "/v1/responses", respond).data()]
    assert [e["type"] for e in events].count("response.output_text.delta") == 1
    assert events[-1]["type"] == "response.output_text.delta"


def test_reset_through_the_in_process_transport() -> None:
    spec = ProviderSpec(
        name="mock", type="mock", base_url=None, source="config", mock=MockConfig(faults="reset")
    )
    provider = build_provider(spec, None, ASGITransport(object()), read_timeout=5)
    body = json.dumps(chat_payload("hi")).encode()
    with pytest.raises(UpstreamUnreachable, match="without answering"):
        asyncio.run(provider.send(Endpoint.CHAT, "gpt-4o-mini", body, stream=False))


# --- malformed JSON ---------------------------------------------------------------------------


def _is_json(text: str | bytes) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_badjson_body(app: MockUpstream) -> None:
    reply = chat(app, "[[mock:faults=badjson]]")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["content-length"] == str(len(reply.body))
    assert reply.body.startswith(b'{"')
    assert not _is_json(reply.body)
    assert _is_json(chat(app, "[[mock:faults=badjson]]").body)  # used up
    # (Counted per script text and model, whatever the route: a fresh app for each.)
    embed = {"model": "text-embedding-3-small", "input": "[[mock:faults=badjson]]"}
    assert not _is_json(post(create_mock_app(MockSettings()), "/v1/embeddings", embed).body)
    respond = {"model": "gpt-4o-mini", "input": "[[mock:faults=badjson]]"}
    assert not _is_json(post(create_mock_app(MockSettings()), "/v1/responses", respond).body)


def test_badjson_stream(app: MockUpstream) -> None:
    reply = chat(app, "[[mock:faults=badjson]]", stream=True)
    assert (reply.status, reply.raised) == (200, None)  # the stream ends, no dropped socket
    (data,) = reply.data()  # one line, then the end: no [DONE]
    assert data.startswith('{"')
    assert not _is_json(data)
    respond = {"model": "gpt-4o-mini", "input": "[[mock:faults=badjson]]", "stream": True}
    events = post(create_mock_app(MockSettings()), "/v1/responses", respond)
    assert events.body.startswith(b"event: response.created\ndata: {")
    (data,) = events.data()
    assert not _is_json(data)


# --- context overflow -------------------------------------------------------------------------


def test_context_overflow_as_openai_reports_it(app: MockUpstream) -> None:
    error = chat(app, "[[mock:faults=context]]").error(400)
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
    )
    match = re.fullmatch(
        r"This model's maximum context length is 128000 tokens\. However, your messages "
        r"resulted in (\d+) tokens\. Please reduce the length of the messages\.",
        error["message"],
    )
    assert match is not None
    assert int(match[1]) > 128_000
    assert chat(app, "[[mock:faults=context]]").status == 200
    embed = {"model": "text-embedding-3-small", "input": "[[mock:faults=context]]"}
    overflow = post(app, "/v1/embeddings", embed).error(400)
    assert (overflow["code"], overflow["param"]) == ("context_length_exceeded", "input")


# --- off-schema content -----------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


def _content(reply: Sent) -> str:
    if reply.headers["content-type"] == "text/event-stream":
        chunks = [json.loads(data) for data in reply.data() if data != "[DONE]"]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    return str(reply.json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize("stream", [False, True])
def test_schema_breaks_a_json_schema(app: MockUpstream, stream: bool) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    text = "[[mock:faults=schema]]"
    broken = chat(app, text, response_format=fmt, stream=stream)
    assert broken.status == 200
    instance = json.loads(_content(broken))  # still JSON ...
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(instance, PERSON)  # ... but not what the schema asks for
    fine = json.loads(_content(chat(app, text, response_format=fmt, stream=stream)))
    jsonschema.validate(fine, PERSON)


@pytest.mark.parametrize("stream", [False, True])
def test_schema_breaks_json_object_mode(app: MockUpstream, stream: bool) -> None:
    fmt = {"type": "json_object"}
    text = "[[mock:faults=schema]]"
    broken = _content(chat(app, text, response_format=fmt, stream=stream))
    assert broken.startswith("This is a mock reply")
    assert not _is_json(broken)
    assert isinstance(
        json.loads(_content(chat(app, text, response_format=fmt, stream=stream))), dict
    )


@pytest.mark.parametrize(
    "schema",
    [
        PERSON,
        {"$ref": "#/$defs/p", "$defs": {"p": PERSON}},
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
        {"type": "object", "properties": {"a": {"type": "string"}}},
        {"type": "array", "items": {"type": "integer"}},
        {"type": "string"},
        {"type": ["integer", "null"]},
    ],
)
def test_violating_instance_is_rejected_by_its_schema(schema: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(violating_instance(schema), schema)


# --- the provider's script in the config ------------------------------------------------------


def test_config_faults_are_validated_at_load_time() -> None:
    assert MockConfig(faults="429:retry=2,500*2,ok").faults == "429:retry=2,500*2,ok"
    with pytest.raises(ValidationError, match=r"step 2 'boom': unknown step"):
        MockConfig(faults="429,boom")
    with pytest.raises(FaultSpecError):
        MockSettings(faults="600")


def test_config_faults_reach_the_mock_through_build_provider() -> None:
    spec = ProviderSpec(
        name="mock",
        type="mock",
        base_url=None,
        source="config",
        mock=MockConfig(faults="503:retry=4*2,ok"),
    )
    provider = build_provider(spec, None, ASGITransport(object()), read_timeout=5)
    assert isinstance(provider.transport, ASGITransport)
    assert provider.transport.app.settings.faults == "503:retry=4*2,ok"

    async def statuses(model: str, text: str, times: int) -> list[tuple[int, str | None]]:
        body = json.dumps(chat_payload(text, model)).encode()
        seen = []
        for _ in range(times):
            response = await provider.send(Endpoint.CHAT, model, body, stream=False)
            await response.read()
            seen.append((response.status, response.headers.get("retry-after")))
        return seen

    async def main() -> None:
        assert await statuses("gpt-4o-mini", "hi", 4) == [
            (503, "4"),
            (503, "4"),
            (200, None),
            (200, None),
        ]
        assert (await statuses("gpt-4o", "hi", 1))[0][0] == 503  # counted per model
        # A request's own script takes precedence over the provider's.
        assert await statuses("gpt-4o", "[[mock:faults=ok,429]]", 2) == [(200, None), (429, "1")]
        assert (await statuses("gpt-4o", "hi", 1))[0][0] == 503  # the provider's, untouched

    asyncio.run(main())


# --- over real HTTP ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(settings: MockSettings) -> AsyncIterator[str]:
    """The mock on a free loopback port via `serve_mock` (uvicorn), in this event loop."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = asyncio.create_task(serve_mock("127.0.0.1", port, settings))
    try:
        for _ in range(500):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


def test_socket_faults_over_http() -> None:
    async def main() -> None:
        async with served(MockSettings()) as url, aiohttp.ClientSession() as session:
            # reset: the socket closes without a byte (not uvicorn's own 500).
            reset = chat_payload("[[mock:faults=reset,ok]]")
            with pytest.raises(aiohttp.ServerDisconnectedError):
                async with session.post(url, json=reset) as response:
                    await response.read()
            async with session.post(url, json=reset) as response:
                assert response.status == 200  # the next attempt gets the next step

            # reset=2 on a stream: two content chunks, then the connection drops.
            dropped = chat_payload("[[mock:faults=reset=2]]", stream=True)
            received = b""
            with pytest.raises(aiohttp.ClientPayloadError):
                async with session.post(url, json=dropped) as response:
                    assert response.status == 200
                    async for chunk in response.content.iter_any():
                        received += chunk
            frames = [f for f in received.decode().split("\n\n") if f]
            assert len(frames) == 1 + 2
            assert b"[DONE]" not in received

            # stall: status and headers now, the first event after the stall.
            stalled = chat_payload("[[mock:faults=stall=150]]", stream=True)
            begun = time.perf_counter()
            async with session.post(url, json=stalled) as response:
                headers_after = time.perf_counter() - begun
                assert response.headers["content-type"] == "text/event-stream"
                first = await response.content.readany()
                first_event_after = time.perf_counter() - begun
                assert (first + await response.read()).endswith(b"data: [DONE]\n\n")
            assert headers_after < 0.1
            assert first_event_after >= 0.15

    asyncio.run(main())
