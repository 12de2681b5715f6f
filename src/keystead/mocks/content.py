"""What the mock upstream says: deterministic text, token counts, tool arguments, embeddings,
and the OpenAI payload shapes they go into.

Everything here is a pure function of the request, so tests can predict what the mock says.

Token counting is a deliberate approximation, not tiktoken: a "token" is a run of word
characters or a single punctuation mark (`count_tokens("Hi, you!") == 4`). A prompt costs the
tokens of every message's text + 3 per message + 3 priming the reply (the shape of OpenAI's own
accounting). A reply costs one token per streamed piece, i.e. per word of plain text.

Directives steer the mock from inside the last user message (for embeddings: the last string
input), so they pass through any gateway. They are stripped from the echoed text.

    [[mock:status=429]]          answer that status (>= 400) with an OpenAI error body;
                                 429 adds `retry-after: 1`
    [[mock:latency=200]]         wait that many ms first (on top of `MockSettings.latency_ms`)
    [[mock:tokens=5]]            reply with exactly 5 words = 5 completion tokens (instead of
                                 16); max_tokens / max_completion_tokens still cap it
    [[mock:disconnect_after=2]]  streaming only: send 2 content chunks, then drop the connection
                                 (no finishing chunk, no [DONE]); a K past the end of the
                                 content is never reached
    [[mock:no_usage]]            leave `usage` out (body, usage chunk, responses usage)
    [[mock:faults=SPEC]]         a fault script: one step per attempt of the same request, so
                                 a retrying client can be tested (`429,500,ok`: 429, then
                                 500, then a normal answer); see `mocks.faults` for the steps
    [[mock:faults@MODEL=SPEC]]   the same, only for requests whose model (or Azure deployment)
                                 is MODEL; several may sit in one message, for different models

Attempts of a script are counted per (mock app, SPEC text, model). A scoped script beats an
unscoped one; a request with no script for its model gets the provider's `mock.faults`, if any.
Only `faults` takes an `@MODEL` scope: other directives with one are ignored.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import random
import re
import struct
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from keystead.mocks.faults import FaultDirective
from keystead.mocks.structured import ToolOffer, pick_tool, shape_text, tool_arguments

__all__ = [
    "ARGUMENT_FRAGMENT",
    "DEFAULT_COMPLETION_TOKENS",
    "Directives",
    "Reply",
    "chat_message",
    "chat_usage",
    "count_tokens",
    "embedding_vector",
    "encode_base64",
    "last_user_text",
    "malformed_json",
    "message_text",
    "model_object",
    "new_id",
    "parse_directives",
    "plan_reply",
    "plan_text",
    "prompt_tokens",
    "reply_words",
    "split_pieces",
    "stream_deltas",
    "strip_directives",
]

DEFAULT_COMPLETION_TOKENS = 16
MODEL_CREATED = 1_700_000_000
ARGUMENT_FRAGMENT = 8  # characters of tool-call arguments per streamed chunk

# [[mock:NAME]], [[mock:NAME=VALUE]], [[mock:NAME@MODEL=VALUE]]
_DIRECTIVE = re.compile(r"\[\[mock:([a-z_]+)(?:@([^=\]]+))?(?:=([^\]]*))?\]\]")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*\S+")
_FILLER = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]


@dataclass(frozen=True, slots=True)
class Directives:
    status: int | None = None
    latency_ms: float | None = None
    tokens: int | None = None
    disconnect_after: int | None = None
    no_usage: bool = False
    faults: tuple[FaultDirective, ...] = ()

    def fault_spec(self, model: str) -> str | None:
        """The fault script for a request to `model`: the last one scoped to it, else the
        last unscoped one, else None."""
        for scope in (model, None):
            specs = [fault.spec for fault in self.faults if fault.model == scope]
            if specs:
                return specs[-1]
        return None


def parse_directives(text: str) -> Directives:
    """Read `[[mock:name=value]]` markers; unknown names and bad values are ignored."""
    found: dict[str, Any] = {}
    faults: list[FaultDirective] = []
    for name, scope, value in _DIRECTIVE.findall(text):
        if name == "faults":
            faults.append(FaultDirective(scope.strip() or None, value.strip()))
            continue
        if scope:
            continue  # only fault scripts can be scoped to a model
        try:
            if name in ("status", "tokens", "disconnect_after"):
                found[name] = int(value)
            elif name == "latency":
                found["latency_ms"] = float(value)
            elif name == "no_usage":
                found["no_usage"] = True
        except ValueError:
            continue
    return Directives(**found, faults=tuple(faults))


def strip_directives(text: str) -> str:
    return " ".join(_DIRECTIVE.sub(" ", text).split())


def message_text(content: Any) -> str:
    """Text of a message `content`: a string, or an array of parts of which text parts count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def reply_words(prompt: str, n: int) -> list[str]:
    """The first `n` words of "This is a mock reply to: <prompt>" followed by endless filler."""
    base = f"This is a mock reply to: {strip_directives(prompt)}".split()
    return list(itertools.islice(itertools.chain(base, itertools.cycle(_FILLER)), n))


def split_pieces(text: str) -> list[str]:
    """Stream pieces that concatenate back to `text`: each word with its leading whitespace."""
    return _PIECE.findall(text)


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def prompt_tokens(messages: list[Any]) -> int:
    """Text tokens of every message + 3 per message + 3 priming the reply."""
    texts = [message_text(m.get("content")) for m in messages if isinstance(m, dict)]
    return sum(count_tokens(text) + 3 for text in texts) + 3


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


# --- chat completions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """One choice: text content or a single tool call."""

    content: str | None
    tool_call: dict[str, Any] | None
    finish_reason: str
    tokens: int


def plan_text(prompt: str, directives: Directives, limit: Any) -> tuple[str, str]:
    """Reply text and finish reason: `tokens=N` (or the default) words, capped by max tokens."""
    wanted = DEFAULT_COMPLETION_TOKENS if directives.tokens is None else max(0, directives.tokens)
    count = min(wanted, limit) if isinstance(limit, int) and limit > 0 else wanted
    return " ".join(reply_words(prompt, count)), "length" if count < wanted else "stop"


def plan_reply(
    body: dict[str, Any], prompt: str, directives: Directives, *, off_schema: bool = False
) -> Reply:
    """A tool call if tools are on offer (see `pick_tool`), else text (JSON text under
    `response_format`).

    `off_schema` (the `schema` fault) makes text that breaks `response_format`: not JSON for
    `json_object`, JSON the schema rejects for `json_schema` (see `violating_instance`).
    """
    tool = pick_tool(*_chat_tools(body))
    if tool is not None:
        arguments = tool_arguments(tool)
        function = {"name": tool.name, "arguments": arguments}
        call = {"id": new_id("call_"), "type": "function", "function": function}
        return Reply(None, call, "tool_calls", count_tokens(tool.name) + count_tokens(arguments))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    content, finish = plan_text(prompt, directives, limit)
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt, dict) else None
    content = shape_text(content, fmt.get("type"), schema, off_schema=off_schema)
    return Reply(content, None, finish, len(split_pieces(content)))


def _chat_tools(body: dict[str, Any]) -> tuple[list[ToolOffer], str, str | None, bool]:
    """Chat's function tools, `tool_choice` as (mode, named function) and whether the last
    message is a tool result."""
    offers = [
        ToolOffer(str(tool["function"].get("name", "tool")), tool["function"].get("parameters"))
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict)
    ]
    choice = body.get("tool_choice", "auto")
    mode, named = (choice, None) if isinstance(choice, str) else ("auto", None)
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        mode, named = "required", choice["function"].get("name")
    elif isinstance(choice, dict) and isinstance(choice.get("allowed_tools"), dict):
        allowed = choice["allowed_tools"]
        names = {(t.get("function") or {}).get("name") for t in allowed.get("tools") or []
                 if isinstance(t, dict)}
        offers, mode = [o for o in offers if o.name in names], str(allowed.get("mode", "auto"))
    messages = body.get("messages") or []
    answered = bool(messages) and isinstance(messages[-1], dict) \
        and messages[-1].get("role") == "tool"
    return offers, mode, named, answered


def chat_message(reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    message["annotations"] = []
    if reply.tool_call is not None:
        message["tool_calls"] = [reply.tool_call]
    return message


def stream_deltas(reply: Reply) -> list[dict[str, Any]]:
    """The deltas OpenAI streams for one choice: the role delta, then content pieces (or the
    tool call's header, then fragments of its arguments)."""
    if reply.tool_call is None:
        first = {"role": "assistant", "content": "", "refusal": None}
        return [first, *({"content": piece} for piece in split_pieces(reply.content or ""))]
    call, arguments = reply.tool_call, reply.tool_call["function"]["arguments"]
    header = {"index": 0, "id": call["id"], "type": "function"}
    header["function"] = {"name": call["function"]["name"], "arguments": ""}
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "tool_calls": [header], "refusal": None}
    ]
    for start in range(0, len(arguments), ARGUMENT_FRAGMENT):
        fragment = arguments[start : start + ARGUMENT_FRAGMENT]
        deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
    return deltas


def chat_usage(messages: list[Any], replies: list[Reply]) -> dict[str, Any]:
    prompt = prompt_tokens(messages)
    completion = sum(reply.tokens for reply in replies)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


# --- models ----------------------------------------------------------------------------------


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": "keystead-mock"}


# --- embeddings --------------------------------------------------------------------------------


def malformed_json(obj: Any) -> bytes:
    """`obj` as JSON cut off halfway, so no parser accepts it (the `badjson` fault)."""
    data = orjson.dumps(obj)
    return data[: max(1, len(data) // 2)]


def embedding_vector(item: str | list[int], dims: int) -> list[float]:
    """A unit vector seeded by the input, so equal inputs embed identically."""
    seed = hashlib.sha256(repr(item).encode()).digest()
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def encode_base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32 array."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
