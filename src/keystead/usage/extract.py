"""Read usage out of provider responses without building the rest of the document.

Chat and embeddings report `prompt_tokens`/`completion_tokens`; the Responses API reports
`input_tokens`/`output_tokens`; Anthropic's Messages API `input_tokens`/`output_tokens` too, with
the prompt's cached part beside them (`cache_read_input_tokens`, `cache_creation_input_tokens`)
rather than inside. keystead's convention (as the translated `anthropic` provider's): prompt
tokens = input + cache read + cache creation, cached = cache read, cache writes = creation.
msgspec skips every other field (an embeddings body of a few MB is scanned, not materialised).
"""

from __future__ import annotations

import msgspec

from keystead.usage.prices import TokenUsage

__all__ = ["MessagesUsage", "messages_event", "read_answer", "usage_from_body",
           "usage_from_event"]


class _Details(msgspec.Struct):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None  # the translated anthropic provider writes it


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _Details | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_tokens_details: _Details | None = None
    # Anthropic's Messages API: beside input_tokens, not part of it.
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None

    def tokens(self) -> TokenUsage:
        if self.prompt_tokens is None and (self.cache_read_input_tokens is not None
                                           or self.cache_creation_input_tokens is not None):
            return _anthropic_tokens(self.input_tokens, self.output_tokens,
                                     self.cache_read_input_tokens,
                                     self.cache_creation_input_tokens)
        prompt = self.prompt_tokens if self.prompt_tokens is not None else self.input_tokens
        completion = (self.completion_tokens if self.completion_tokens is not None
                      else self.output_tokens)
        details = self.prompt_tokens_details or self.input_tokens_details
        cached = written = 0
        if details is not None:
            cached = details.cached_tokens or 0
            written = details.cache_write_tokens or 0
        return TokenUsage(prompt_tokens=prompt or 0, completion_tokens=completion or 0,
                          cached_tokens=cached, cache_write_tokens=written)


def _anthropic_tokens(input_tokens: int | None, output_tokens: int | None,
                      cache_read: int | None, cache_creation: int | None) -> TokenUsage:
    read, written = cache_read or 0, cache_creation or 0
    return TokenUsage(prompt_tokens=(input_tokens or 0) + read + written,
                      completion_tokens=output_tokens or 0, cached_tokens=read,
                      cache_write_tokens=written)


class MessagesUsage(msgspec.Struct):
    """The `usage` of an Anthropic Messages stream event, as sent (None: not in this event)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None

    def merged(self, later: MessagesUsage) -> MessagesUsage:
        """These counts, updated with those `later` reports (message_delta's are cumulative)."""
        return MessagesUsage(*(self_value if later_value is None else later_value
                               for self_value, later_value in (
                                   (self.input_tokens, later.input_tokens),
                                   (self.output_tokens, later.output_tokens),
                                   (self.cache_read_input_tokens, later.cache_read_input_tokens),
                                   (self.cache_creation_input_tokens,
                                    later.cache_creation_input_tokens))))

    def tokens(self) -> TokenUsage:
        return _anthropic_tokens(self.input_tokens, self.output_tokens,
                                 self.cache_read_input_tokens, self.cache_creation_input_tokens)


class _Body(msgspec.Struct):
    usage: _Usage | None = None
    model: str | None = None


class _ResponsesEvent(msgspec.Struct):
    response: _Body | None = None
    usage: _Usage | None = None
    model: str | None = None


class _MessageStarted(msgspec.Struct):
    model: str | None = None
    usage: MessagesUsage | None = None


class _MessagesEvent(msgspec.Struct):
    type: str = ""
    message: _MessageStarted | None = None  # message_start
    usage: MessagesUsage | None = None  # message_delta


_BODY = msgspec.json.Decoder(_Body)
_EVENT = msgspec.json.Decoder(_ResponsesEvent)
_MESSAGES_EVENT = msgspec.json.Decoder(_MessagesEvent)


def usage_from_body(body: bytes) -> tuple[TokenUsage | None, str | None]:
    """(usage, model) of a non-streamed response; (None, None) if it has none or is not JSON."""
    return read_answer(body) or (None, None)


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


def messages_event(data: bytes) -> tuple[MessagesUsage | None, str | None]:
    """(usage, model) of an Anthropic `message_start` or `message_delta` data payload."""
    try:
        parsed = _MESSAGES_EVENT.decode(data)
    except msgspec.DecodeError:
        return None, None
    if parsed.message is not None:
        return parsed.message.usage, parsed.message.model
    return parsed.usage, None
