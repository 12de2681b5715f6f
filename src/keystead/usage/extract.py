"""Read usage out of provider responses without building the rest of the document.

Chat and embeddings report `prompt_tokens`/`completion_tokens`; the Responses API reports
`input_tokens`/`output_tokens`. msgspec skips every other field (an embeddings body of a few MB
is scanned, not materialised).
"""

from __future__ import annotations

import msgspec

from keystead.usage.prices import TokenUsage

__all__ = ["read_answer", "usage_from_body", "usage_from_event"]


class _Details(msgspec.Struct):
    cached_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _Details | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_tokens_details: _Details | None = None

    def tokens(self) -> TokenUsage:
        prompt = self.prompt_tokens if self.prompt_tokens is not None else self.input_tokens
        completion = (self.completion_tokens if self.completion_tokens is not None
                      else self.output_tokens)
        details = self.prompt_tokens_details or self.input_tokens_details
        cached = details.cached_tokens if details and details.cached_tokens else 0
        return TokenUsage(prompt_tokens=prompt or 0, completion_tokens=completion or 0,
                          cached_tokens=cached)


class _Body(msgspec.Struct):
    usage: _Usage | None = None
    model: str | None = None


class _ResponsesEvent(msgspec.Struct):
    response: _Body | None = None
    usage: _Usage | None = None
    model: str | None = None


_BODY = msgspec.json.Decoder(_Body)
_EVENT = msgspec.json.Decoder(_ResponsesEvent)


def usage_from_body(body: bytes) -> tuple[TokenUsage | None, str | None]:
    """(usage, model) of a non-streamed response; (None, None) if it has none or is not JSON."""
    try:
        parsed = _BODY.decode(body)
    except msgspec.DecodeError:
        return None, None
    return (parsed.usage.tokens() if parsed.usage else None), parsed.model


def read_answer(body: bytes) -> tuple[TokenUsage | None, str | None] | None:
    """(usage, model) of a non-streamed answer; None when it is not one well-formed JSON
    object (a malformed answer, which the router retries). One pass over the body."""
    try:
        parsed = _BODY.decode(body)
    except msgspec.DecodeError:
        return None
    return (parsed.usage.tokens() if parsed.usage else None), parsed.model


def usage_from_event(data: bytes) -> tuple[TokenUsage | None, str | None]:
    """(usage, model) of one SSE data payload: a chat chunk or a Responses API event."""
    try:
        parsed = _EVENT.decode(data)
    except msgspec.DecodeError:
        return None, None
    if parsed.usage is not None:
        return parsed.usage.tokens(), parsed.model
    if parsed.response is not None and parsed.response.usage is not None:
        return parsed.response.usage.tokens(), parsed.response.model
    return None, parsed.model
