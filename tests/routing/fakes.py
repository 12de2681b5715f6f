"""A scripted provider and a fake clock for router tests: no sockets, exact schedules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from multidict import CIMultiDict

from keystead.errors import UpstreamUnreachable
from keystead.providers.base import Capabilities, Endpoint, Provider

OK_BODY = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
                        "choices": [{"index": 0, "message": {"role": "assistant",
                                                             "content": "hi"},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1,
                                  "total_tokens": 4}})


class FakeResponse:
    def __init__(self, status: int, body: bytes = b"{}", headers: Mapping[str, str] | None = None,
                 chunks: list[bytes | BaseException] | None = None):
        self.status = status
        self.headers = CIMultiDict(headers or {})
        self._body = body
        self._chunks = chunks or []
        self.aborted = False
        self.released = False

    async def read(self) -> bytes:
        return self._body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk

    def abort(self) -> None:
        self.aborted = True

    def release(self) -> None:
        self.released = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


class ScriptedProvider(Provider):
    """Answers from a script: each item a FakeResponse, an exception, or "ok"."""

    type = "openai-compatible"

    def __init__(self, name: str, script: list[Any] | None = None, *, repeat: Any = "ok"):
        super().__init__(name, base_url="http://fake", api_key=None, models=("m",),
                         transport=None,  # type: ignore[arg-type]
                         read_timeout=10, capabilities=Capabilities())
        self.script = list(script or [])
        self.repeat = repeat
        self.calls: list[tuple[str, bytes | None]] = []

    def request_target(self, endpoint: Endpoint, model: str,
                       *args: Any) -> tuple[str, dict[str, str]]:
        return "http://fake", {}

    async def send(self, endpoint: Endpoint, model: str, body: bytes | None, *,
                   stream: bool) -> Any:
        self.calls.append((model, body))
        item = self.script.pop(0) if self.script else self.repeat
        if item == "ok":
            return FakeResponse(200, OK_BODY)
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            return await item()
        return item


def reset() -> UpstreamUnreachable:
    return UpstreamUnreachable("Provider fake closed the connection mid-response.")
