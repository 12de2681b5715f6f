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

__all__ = [
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
    "response_object",
    "responses_usage",
    "sample_instance",
    "split_pieces",
    "stream_deltas",
    "strip_directives",
    "violating_instance",
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
    """A tool call if tools are on offer, else text (JSON text under `response_format`).

    `off_schema` (the `schema` fault) makes text that breaks `response_format`: not JSON for
    `json_object`, JSON the schema rejects for `json_schema` (see `violating_instance`).
    """
    tool = _chosen_tool(body)
    if tool is not None:
        name = tool["function"].get("name", "tool")
        parameters = tool["function"].get("parameters") or {"type": "object"}
        arguments = orjson.dumps(sample_instance(parameters)).decode()
        function = {"name": name, "arguments": arguments}
        call = {"id": new_id("call_"), "type": "function", "function": function}
        return Reply(None, call, "tool_calls", count_tokens(name) + count_tokens(arguments))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    content, finish = plan_text(prompt, directives, limit)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object" and not off_schema:
        content = orjson.dumps({"reply": content}).decode()
    elif fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        instance = violating_instance(schema) if off_schema else sample_instance(schema)
        content = orjson.dumps(instance).decode()
    return Reply(content, None, finish, len(split_pieces(content)))


def _chosen_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function tool to call: the one `tool_choice` names, else the first; None for text."""
    tools = [
        tool
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict)
    ]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        wanted = choice["function"].get("name")
        return next((t for t in tools if t["function"].get("name") == wanted), tools[0])
    return tools[0]


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


# --- responses API and models -----------------------------------------------------------------


def response_object(
    response_id: str, created: int, body: dict[str, Any], status: str, output: list[Any]
) -> dict[str, Any]:
    """A Responses API `response` with every field the schema requires, echoing the request."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "completed_at": created if status == "completed" else None,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "metadata": body.get("metadata") or {},
    }


def responses_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": "keystead-mock"}


# --- JSON-schema instances and embeddings -----------------------------------------------------


def sample_instance(schema: Any, root: Any = None) -> Any:
    """A small value valid for a JSON schema: required properties only, simplest values.

    Covers what tool `parameters` and `json_schema` formats use in practice: type (or a list
    of types), enum/const, object, array (minItems), anyOf/oneOf/allOf and local `$ref`s;
    string lengths and minimums are honoured, patterns and formats are not.
    """
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return {}
    if "$ref" in schema:
        return sample_instance(_resolve_local(root, schema["$ref"]), root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return sample_instance(schema[key][0], root)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = sample_instance(part, root)
            if not isinstance(value, dict):
                return value
            merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "array" if "items" in schema else "object"
    if kind == "object":
        props = schema.get("properties", {})
        return {
            name: sample_instance(props.get(name, {}), root) for name in schema.get("required", [])
        }
    if kind == "array":
        count = schema.get("minItems", 0)
        return [sample_instance(schema.get("items", {}), root) for _ in range(count)]
    if kind == "string":
        return "mock".ljust(schema.get("minLength", 0), "k")[: schema.get("maxLength")]
    if kind in ("number", "integer"):
        if "exclusiveMinimum" in schema:
            value = math.floor(schema["exclusiveMinimum"]) + 1
        else:
            value = math.ceil(schema.get("minimum", 0))
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    return None


def violating_instance(schema: Any) -> Any:
    """A JSON value the schema rejects, as a model slipping out of structured output would
    send: `sample_instance` without its first required property; for a schema without one,
    with an unexpected property (`additionalProperties: false`); else a value of a type the
    schema does not allow. (A schema that allows anything, like `{}`, rejects nothing.)
    """
    node, seen = schema, 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 32:
        node, seen = _resolve_local(schema, node["$ref"]), seen + 1
    if not isinstance(node, dict):
        return None
    sample = sample_instance(schema)
    if isinstance(sample, dict):
        required = node.get("required") or []
        if required:
            return {k: v for k, v in sample.items() if k != required[0]}
        if node.get("additionalProperties") is False:
            return {**sample, "unexpected_mock_field": True}
    kinds = node.get("type") or ("object" if "properties" in node else None)
    allowed = set(kinds) if isinstance(kinds, list) else {kinds}
    wrong: list[tuple[str, Any]] = [
        ("array", []),
        ("object", {}),
        ("string", "mock"),
        ("boolean", False),
        ("null", None),
    ]
    return next((value for kind, value in wrong if kind not in allowed), 0.5)


def malformed_json(obj: Any) -> bytes:
    """`obj` as JSON cut off halfway, so no parser accepts it (the `badjson` fault)."""
    data = orjson.dumps(obj)
    return data[: max(1, len(data) // 2)]


def _resolve_local(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return {}  # remote refs: give up gracefully, an empty object is the best guess
    node = root
    path = ref[1:].strip("/")
    for raw in path.split("/") if path else []:
        node = (
            node.get(raw.replace("~1", "/").replace("~0", "~"), {})
            if isinstance(node, dict)
            else {}
        )
    return node


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
