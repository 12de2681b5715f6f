"""Token counts when the provider gives none: no usage in the body, or a stream cut short.

Estimated offline without a tokenizer (usage/approx_tokens.py: no tables to load, so the first
broken stream costs no memory), and flagged `usage_estimated` in the ledger. `model` stays in
the signatures: the estimate is the same for every OpenAI encoding today.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from keystead.usage.approx_tokens import chat_prompt_tokens, text_tokens
from keystead.usage.prices import TokenUsage

__all__ = ["estimate_chat", "estimate_embeddings", "estimate_responses", "json_value",
           "streamed_text"]


def json_value(raw: bytes | msgspec.Raw | None) -> Any:
    """A request field or payload as JSON; None when absent or not JSON."""
    if not raw:
        return None
    try:
        # The request's fields arrive as msgspec.Raw, which orjson reads only as a buffer.
        return orjson.loads(memoryview(raw) if isinstance(raw, msgspec.Raw) else raw)
    except orjson.JSONDecodeError:
        return None


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects in a JSON list; anything else in it (or a non-list) is skipped."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _arguments(call: dict[str, Any]) -> str:
    function = call.get("function")
    arguments = function.get("arguments") if isinstance(function, dict) else None
    return arguments if isinstance(arguments, str) else ""


def _choices_text(document: dict[str, Any], field: str, parts: list[str]) -> None:
    """Append the content and tool-call arguments of every choice's `field`.

    `field` is "message" in a whole chat completion, "delta" in a stream chunk.
    """
    for choice in _dicts(document.get("choices")):
        message = choice.get(field)
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
        parts.extend(_arguments(call) for call in _dicts(message.get("tool_calls")))


def _message_text(document: Any) -> str:
    parts: list[str] = []
    if isinstance(document, dict):
        _choices_text(document, "message", parts)
    return "".join(parts)


def streamed_text(payloads: list[bytes]) -> str:
    """The text generated so far in a chat or Responses stream, from its data payloads."""
    parts: list[str] = []
    for payload in payloads:
        event = json_value(payload)
        if not isinstance(event, dict):
            continue
        if isinstance(event.get("delta"), str):  # Responses API: response.output_text.delta
            parts.append(event["delta"])
        else:
            _choices_text(event, "delta", parts)
    return "".join(parts)


def estimate_chat(model: str, messages: bytes | None, tools: bytes | None,
                  response_body: bytes | None = None, streamed: str | None = None) -> TokenUsage:
    prompt = chat_prompt_tokens(json_value(messages), json_value(tools))
    text = streamed if streamed is not None else _message_text(json_value(response_body))
    completion = text_tokens(text) if text else 0
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion)


def estimate_embeddings(model: str, raw_input: bytes | None) -> TokenUsage:
    value = json_value(raw_input)
    if isinstance(value, str):
        return TokenUsage(prompt_tokens=text_tokens(value))
    if isinstance(value, list):
        total = 0
        for item in value:
            if isinstance(item, str):
                total += text_tokens(item)
            elif isinstance(item, int):
                total += 1
            elif isinstance(item, list):
                total += len(item)
        return TokenUsage(prompt_tokens=total)
    return TokenUsage()


def estimate_responses(model: str, raw_input: bytes | None, streamed: str | None) -> TokenUsage:
    value = json_value(raw_input)
    if isinstance(value, str):
        prompt = text_tokens(value)
    else:
        prompt = chat_prompt_tokens(value) if isinstance(value, list) else 0
    return TokenUsage(prompt_tokens=prompt,
                      completion_tokens=text_tokens(streamed) if streamed else 0)
