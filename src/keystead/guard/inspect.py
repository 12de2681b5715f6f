"""Apply a guardrail to a request body: find secrets and personal data in what the model will
read, then only record it, mask it before the body goes upstream, or refuse the request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from keystead.config.model import GuardMode
from keystead.errors import BadRequest
from keystead.guard.detect import Span, find_pii, find_secrets, mask
from keystead.providers.base import Endpoint

__all__ = ["ContentBlocked", "GuardMode", "Verdict", "inspect"]

class ContentBlocked(BadRequest):
    code = "content_blocked"
    kinds: tuple[str, ...] = ()  # everything found, for the log line


@dataclass(frozen=True, slots=True)
class Verdict:
    kinds: tuple[str, ...]  # what was found (detector ids), sorted, never the values
    body: bytes | None  # the masked body, when something was masked


def _texts(endpoint: Endpoint, document: dict[str, Any],
           visit: Callable[[str], str]) -> None:
    """Call `visit` on every string the model reads, replacing it with what it returns."""
    def content(holder: dict[str, Any], field: str) -> None:
        value = holder.get(field)
        if isinstance(value, str):
            holder[field] = visit(value)
        elif isinstance(value, list):
            for index, part in enumerate(value):
                if isinstance(part, str):
                    value[index] = visit(part)
                elif isinstance(part, dict):
                    if isinstance(part.get("text"), str):
                        part["text"] = visit(part["text"])
                    if "content" in part:  # Responses input items, Anthropic tool results
                        content(part, "content")

    # The body is the client's: any field may hold any JSON value, so only lists are walked.
    messages = document.get("messages")
    messages = messages if isinstance(messages, list) else ()
    if endpoint is Endpoint.CHAT:
        for message in messages:
            if isinstance(message, dict):
                content(message, "content")
    elif endpoint is Endpoint.MESSAGES or endpoint is Endpoint.COUNT_TOKENS:
        # Anthropic's shape: a top-level system (a string or text blocks), then messages whose
        # content is a string or blocks (text, tool_result with its own content, ...).
        content(document, "system")
        for message in messages:
            if isinstance(message, dict):
                content(message, "content")
    elif endpoint is Endpoint.RESPONSES:
        content(document, "input")
        content(document, "instructions")
    elif endpoint is Endpoint.EMBEDDINGS:
        content(document, "input")


def inspect(endpoint: Endpoint, body: bytes, secrets: GuardMode, pii: GuardMode) -> Verdict:
    document = orjson.loads(body)
    if not isinstance(document, dict):
        return Verdict((), None)
    found: set[str] = set()
    masked = False
    blocked: set[str] = set()

    def visit(text: str) -> str:
        nonlocal masked
        to_mask: list[Span] = []
        for mode, spans in ((secrets, find_secrets(text) if secrets != "off" else []),
                            (pii, find_pii(text) if pii != "off" else [])):
            kinds = {s.kind for s in spans}
            found.update(kinds)
            if mode == "block":
                blocked.update(kinds)
            elif mode == "mask":
                to_mask += spans
        if not to_mask:
            return text
        masked = True
        return mask(text, to_mask)

    _texts(endpoint, document, visit)
    if blocked:
        error = ContentBlocked(
            f"The request contains {', '.join(sorted(blocked))}, which this key's guardrail "
            "does not let through to the model.",
            hint="Remove it from the prompt (a key or personal data does not belong in one); "
                 "if it is a leaked key, rotate it. The value itself was not logged.")
        error.kinds = tuple(sorted(found))
        raise error
    return Verdict(tuple(sorted(found)), orjson.dumps(document) if masked else None)
