"""Upstream error answers, read whole at the provider boundary (`Provider.send`): the key pool
reads what a 403 says before it decides anything, and every later reader (the router, the
relay, `providers test`) gets the same bytes from `read()`. Only error answers are read here
(the router read their bodies whole anyway); a 2xx answer and a stream are never touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping

from keystead.providers.transport import UpstreamResponse

__all__ = ["ErrorResponse"]


class ErrorResponse:
    """An upstream error answer, read whole: status and headers as they came, the body from
    `read()` (or as one chunk)."""

    __slots__ = ("_inner", "body", "headers", "status")

    def __init__(self, inner: UpstreamResponse, body: bytes):
        self._inner = inner
        self.body = body
        self.status: int = inner.status
        self.headers: Mapping[str, str] = inner.headers

    @classmethod
    async def read_from(cls, response: UpstreamResponse, secrets: Iterable[str]
                        ) -> ErrorResponse:
        if isinstance(response, ErrorResponse):
            return response
        return cls(response, await response.read())

    async def read(self) -> bytes:
        return self.body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        if self.body:
            yield self.body

    def abort(self) -> None:
        self._inner.abort()

    def release(self) -> None:
        self._inner.release()
