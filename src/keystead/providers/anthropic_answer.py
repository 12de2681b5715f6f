"""An Anthropic `message` -> an OpenAI `chat.completion` (`message_to_completion`), and the two
maps a streamed answer shares with it: stop reason -> finish_reason, usage -> OpenAI's usage.

Pure functions (no I/O). Text blocks are joined into the content, tool_use blocks become
tool_calls; thinking, redacted_thinking and server-tool blocks have no OpenAI counterpart.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

__all__ = ["finish_reason", "message_to_completion", "openai_usage"]

_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                   "model_context_window_exceeded": "length", "tool_use": "tool_calls",
                   "refusal": "content_filter"}


def finish_reason(stop_reason: Any) -> str:
    """OpenAI's finish_reason for an Anthropic stop_reason (one it does not know: `stop`)."""
    return _FINISH_REASONS.get(stop_reason, "stop")


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage -> OpenAI's: the prompt counts fresh, cache-read and cache-written input."""
    fresh = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    output = _int(usage.get("output_tokens"))
    prompt = fresh + read + written
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def message_to_completion(message: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    """The OpenAI `chat.completion` for an Anthropic `message`."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id", ""), "type": "function",
                          "function": {"name": block.get("name", ""),
                                       "arguments": orjson.dumps(block.get("input") or {})
                                       .decode()}})
        # thinking, redacted_thinking and server-tool blocks have no OpenAI counterpart
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None,
                             "refusal": None, "annotations": []}
    if calls:
        reply["tool_calls"] = calls
    completion: dict[str, Any] = {
        "id": message.get("id") or "msg_unknown",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": message.get("model") or "",
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": finish_reason(message.get("stop_reason"))}],
    }
    if isinstance(message.get("usage"), dict):
        completion["usage"] = openai_usage(message["usage"])
    return completion
