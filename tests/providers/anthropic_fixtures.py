"""What the Anthropic tests share: the model, a tool, a user turn, an OpenAI stream read back."""

from __future__ import annotations

from typing import Any

import orjson

MODEL = "claude-haiku-4-5"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def openai_events(data: bytes) -> list[Any]:
    events = [e for e in data.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    return [e[6:] if e == b"data: [DONE]" else orjson.loads(e[6:]) for e in events]
