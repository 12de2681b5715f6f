"""A tiny ASGI client for the OpenAI mock upstream: a request in, the whole answer (and SSE
frames) out, with the request itself checked against OpenAI's published request schema; and
the mock served on a real socket, for the official SDKs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from keystead.mocks.openai_upstream import MockDisconnect, MockSettings, MockUpstream, serve_mock
from openapi_schemas import request_schema, validate

__all__ = ["Reply", "assert_error", "call", "served"]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raised: BaseException | None  # the app aborted mid-response

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[tuple[str | None, str]]:
        """SSE frames as (event name, data)."""
        frames = []
        for frame in self.body.decode().split("\n\n"):
            if not frame:
                continue
            fields = dict(line.split(": ", 1) for line in frame.split("\n"))
            frames.append((fields.get("event"), fields["data"]))
        return frames

    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(data) for _, data in self.events() if data != "[DONE]"]


async def _call(
    app: MockUpstream, method: str, path: str, body: bytes, headers: dict[str, str]
) -> Reply:
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("mock", 80),
    }
    # The body arrives in two pieces, so the app must loop on more_body.
    half = len(body) // 2
    incoming = [
        {"type": "http.request", "body": body[:half], "more_body": True},
        {"type": "http.request", "body": body[half:], "more_body": False},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raised = None
    try:
        await app(scope, receive, send)
    except MockDisconnect as exc:
        raised = exc
    start = sent[0]
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    data = b"".join(m.get("body", b"") for m in sent[1:])
    return Reply(start["status"], response_headers, data, raised)


def call(
    app: MockUpstream,
    method: str,
    path: str,
    payload: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Reply:
    # Our requests must themselves be valid OpenAI requests.
    schema = request_schema(path.partition("?")[0], method) if path.startswith("/v1/") else None
    if payload is not None and schema:
        validate(payload, schema)
    body = raw if raw is not None else b"" if payload is None else json.dumps(payload).encode()
    return asyncio.run(_call(app, method, path, body, headers or {}))


def assert_error(reply: Reply, status: int, code: str | None = None) -> dict[str, Any]:
    assert reply.status == status
    validate(reply.json(), "ErrorResponse")
    error = reply.json()["error"]
    if code is not None:
        assert error["code"] == code
    return error


@contextlib.contextmanager
def served(settings: MockSettings) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop = threading.Event()

    async def main() -> None:
        server = asyncio.create_task(serve_mock("127.0.0.1", port, settings))
        await asyncio.to_thread(stop.wait)
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while True:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "mock upstream did not start"
            time.sleep(0.01)
        yield port
    finally:
        stop.set()
        thread.join(5)
