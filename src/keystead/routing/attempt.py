"""How one attempt's answer is judged: what failed, and what comes next.

An attempt that failed raises `AttemptFailed`; its `then` tells the router's loop whether to
retry on the tier, fall back to the next one, or stop (a 4xx a retry cannot fix). A status is
classified by `classify`; a stream is judged by its first event (`first_event`: not an event,
or an error event, is a failed attempt, so a malformed stream is never relayed as a success).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from keystead.errors import GatewayError, UpstreamError
from keystead.providers.transport import UpstreamResponse
from keystead.routing.backoff import retry_after_s
from keystead.sse import FirstEvent, event_end, judge_first

if TYPE_CHECKING:
    from keystead.routing.table import Deployment

__all__ = ["AttemptFailed", "classify", "falls_back", "first_event", "malformed"]

_RETRYABLE_4XX = frozenset((408, 409, 429))
# Bytes a stream may send before its first event is whole (comments and pings included).
_FIRST_EVENT_MAX = 1 << 20


class AttemptFailed(Exception):
    """An attempt that failed. `then` says what comes next: "retry" (this tier again),
    "fallback" (the next tier; on context overflow or a schema failure) or "stop" (a 4xx a
    retry cannot fix: the client gets it as it is)."""

    def __init__(self, outcome: str, *, breaker: bool, then: str = "retry",
                 retry_after: float | None = None,
                 response: tuple[int, Mapping[str, str], bytes] | None = None,
                 error: GatewayError | None = None):
        super().__init__(outcome)
        self.outcome = outcome
        self.breaker = breaker
        self.then = then
        self.retry_after = retry_after
        self.response = response
        self.error = error


async def first_event(chunks: AsyncIterator[bytes], deployment: Deployment,
                       upstream: UpstreamResponse) -> bytes:
    """Everything up to and including the stream's first event that carries data (comments
    and pings before it pass through too). A stream that ends first is StopAsyncIteration."""
    buffer = b""
    start = 0
    while True:
        buffer += await anext(chunks)
        while True:
            end, separator = event_end(buffer, start)
            if end == -1:
                break
            verdict = judge_first(buffer[start:end])
            start = end + separator
            if verdict is FirstEvent.OK:
                return buffer
            if verdict is not FirstEvent.SKIP:
                upstream.abort()
                if verdict is FirstEvent.ERROR:
                    raise AttemptFailed("stream_error", breaker=True,
                                        error=stream_error(deployment))
                raise AttemptFailed("malformed", breaker=True, error=malformed(deployment))
        if len(buffer) - start > _FIRST_EVENT_MAX:
            upstream.abort()
            raise AttemptFailed("malformed", breaker=True, error=malformed(deployment))


def classify(status: int, headers: Mapping[str, str], payload: bytes) -> AttemptFailed:
    response = (status, headers, payload)
    if status == 429:
        return AttemptFailed("http_429", breaker=False, retry_after=retry_after_s(headers),
                      response=response)
    if status >= 500 or status in _RETRYABLE_4XX:
        return AttemptFailed(f"http_{status}", breaker=status >= 500,
                      retry_after=retry_after_s(headers), response=response)
    if status == 400 and (b"context_length_exceeded" in payload
                          # Anthropic's own words, on the passed-through /v1/messages
                          or b"prompt is too long" in payload):
        return AttemptFailed("context", breaker=False, then="fallback", response=response)
    # Anything else (400, 401, 403, 404, 413, 422...) is the same on every retry.
    return AttemptFailed(f"http_{status}", breaker=False, then="stop", response=response)


def falls_back(last: AttemptFailed, triggers: tuple[str, ...]) -> bool:
    """Whether the failure that ended a tier moves on to the next one."""
    if last.then == "stop":
        return False
    if last.outcome == "context":
        return "context_window" in triggers
    if last.outcome == "schema":
        return "schema" in triggers
    return "error" in triggers


def stream_error(deployment: Deployment) -> UpstreamError:
    error = UpstreamError(f"Provider {deployment.provider.name} began its stream with an error.",
                          hint="The gateway retried where it could; retry later.")
    error.code = "upstream_stream_error"
    return error


def malformed(deployment: Deployment) -> UpstreamError:
    error = UpstreamError(f"Provider {deployment.provider.name} answered with malformed JSON.",
                          hint="The gateway retried where it could; retry later.")
    error.code = "upstream_malformed"
    return error
