"""OpenAI chat completions <-> Anthropic Messages, as pure functions (no I/O).

- `chat_to_messages`: an OpenAI chat request -> an Anthropic Messages request. What has no
  Anthropic equivalent is refused with a 400 naming the field (`InvalidField`), never dropped
  in a way that changes what the client gets back; a few OpenAI-only hints are dropped
  (`_DROPPED`).
- `message_to_completion`: an Anthropic `message` -> an OpenAI `chat.completion`.
- `StreamTranslator`: Anthropic's SSE events -> OpenAI `chat.completion.chunk` events, fed the
  bytes as they arrive (events split anywhere), ending with the usage chunk and `[DONE]`.
- `error_to_openai`: an Anthropic error answer -> OpenAI's status and error envelope.

docs/providers.md is the reader's version of the rules below.
"""

from __future__ import annotations

import binascii
import re
import time
from typing import Any

import orjson

from keystead.errors import InvalidField

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "StreamTranslator",
    "chat_to_messages",
    "error_to_openai",
    "finish_reason",
    "map_error",
    "mapped_status",
    "message_to_completion",
    "openai_usage",
]

# Anthropic requires max_tokens; OpenAI does not. Every current Claude model can produce this many.
DEFAULT_MAX_TOKENS = 4096

# OpenAI fields with no effect worth keeping on Claude: dropped, as Anthropic's own
# OpenAI-compatible endpoint drops them. Any other field without a translation is refused
# (`_translate_options`).
_DROPPED = frozenset({
    "model", "messages", "stream_options", "seed", "store", "metadata", "service_tier",
    "prompt_cache_key", "prompt_cache_retention", "verbosity",
})
_HINT_REMOVE = "Remove it from the request for Claude models, or use a model of another provider."
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*?;base64,(.*)", re.DOTALL)
_TOOL_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")
_CONTEXT_OVERFLOW = re.compile(r"prompt is too long|exceed(s|ed)? (the )?context|context window",
                               re.IGNORECASE)


# --- request ------------------------------------------------------------------------------------


def chat_to_messages(body: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    """The Anthropic Messages request for an OpenAI chat completions request `body`."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidField("messages must be a non-empty array.", param="messages")
    system, turns = _conversation(messages)
    if not turns:
        raise InvalidField("The request has only system messages; Claude needs at least one "
                           "user message.", param="messages",
                           hint="Add a message with role user.")
    out: dict[str, Any] = {"model": model}
    if system:
        out["system"] = "\n\n".join(system)
    out["messages"] = turns
    _translate_options(body, out)
    if stream:
        out["stream"] = True
    return out


def _translate_options(body: dict[str, Any], out: dict[str, Any]) -> None:
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    out["max_tokens"] = DEFAULT_MAX_TOKENS if limit is None else limit
    for name, value in body.items():
        if name in _DROPPED or name in ("max_tokens", "max_completion_tokens") or value is None:
            continue
        if name == "temperature":
            # OpenAI's range is 0-2, Anthropic's 0-1: capped, as Anthropic's own OpenAI layer does.
            out["temperature"] = min(value, 1.0) if isinstance(value, int | float) else value
        elif name in ("top_p", "top_k"):
            out[name] = value
        elif name == "stop":
            stops = [value] if isinstance(value, str) else value
            if stops:
                out["stop_sequences"] = stops
        elif name in ("user", "safety_identifier"):
            if isinstance(value, str) and value:
                out.setdefault("metadata", {})["user_id"] = value
        elif name == "stream":
            continue  # the adapter's `stream` decides
        elif name == "n":
            if value != 1:
                raise InvalidField("Claude models return one choice: n must be 1.", param="n",
                                   hint="Send n separate requests instead.")
        elif name in ("logprobs", "top_logprobs"):
            if value:
                raise InvalidField(f"Claude models do not return log probabilities ({name}).",
                                   param=name, hint=_HINT_REMOVE)
        elif name in ("presence_penalty", "frequency_penalty"):
            if value:
                raise InvalidField(f"Claude models have no {name}.", param=name,
                                   hint=_HINT_REMOVE)
        elif name == "logit_bias":
            if value:
                raise InvalidField("Claude models have no logit_bias.", param=name,
                                   hint=_HINT_REMOVE)
        elif name == "response_format":
            _response_format(value, out)
        elif name == "tools":
            if value:
                out["tools"] = [_tool(tool, i) for i, tool in enumerate(value)]
        elif name in ("tool_choice", "parallel_tool_calls"):
            continue  # below, once tools are known
        elif name in ("functions", "function_call"):
            raise InvalidField(f"{name} is OpenAI's deprecated form of tools.", param=name,
                               hint="Send tools and tool_choice instead.")
        else:
            raise InvalidField(f"{name} cannot be translated for Claude models.", param=name,
                               hint=_HINT_REMOVE)
    _tool_choice(body, out)


def _response_format(value: Any, out: dict[str, Any]) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidField("response_format.json_schema.schema must be a JSON schema object.",
                               param="response_format")
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        return
    if kind == "json_object":
        raise InvalidField(
            "Claude models have no free-form JSON mode (response_format json_object).",
            param="response_format",
            hint='Send response_format {"type": "json_schema", "json_schema": {"name": ..., '
                 '"schema": {...}}} with the shape you expect, or ask for JSON in the prompt.')
    raise InvalidField(f"Unknown response_format type {kind!r}.", param="response_format")


def _tool(tool: Any, index: int) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" \
            or not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidField("Only function tools can be translated for Claude models.",
                           param=f"tools[{index}]",
                           hint='Send {"type": "function", "function": {"name": ..., '
                                '"parameters": {...}}}.')
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    out["input_schema"] = schema
    if function.get("strict"):
        out["strict"] = True
    return out


def _tool_choice(body: dict[str, Any], out: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls")
    if not out.get("tools"):
        if choice not in (None, "none", "auto"):
            raise InvalidField("tool_choice needs tools.", param="tool_choice")
        return
    translated: dict[str, Any]
    if choice is None or choice == "auto":
        translated = {"type": "auto"}
    elif choice == "none":
        out["tool_choice"] = {"type": "none"}
        return
    elif choice == "required":
        translated = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) \
            and isinstance(choice["function"].get("name"), str):
        translated = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise InvalidField("tool_choice must be none, auto, required or "
                           '{"type": "function", "function": {"name": ...}}.',
                           param="tool_choice")
    if parallel is False:
        translated["disable_parallel_tool_use"] = True
    if choice is not None or parallel is False:
        out["tool_choice"] = translated


def _conversation(messages: list[Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """System texts (hoisted, in order) and the user/assistant turns, same-role turns merged."""
    system: list[str] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidField(f"{param} must be an object.", param=param)
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_only(message.get("content"), param)
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), param)
        elif role == "assistant":
            blocks = _assistant_blocks(message, param)
        elif role == "tool":
            blocks = [_tool_result(message, param)]
            role = "user"
        else:
            raise InvalidField(f"{param} has role {role!r}, which cannot be translated for "
                               "Claude models.", param=f"{param}.role",
                               hint="Use system, developer, user, assistant or tool.")
        if not blocks:
            continue  # empty text: Claude refuses empty content blocks
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    return system, [_turn(role, blocks) for role, blocks in turns]


def _turn(role: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    if role == "user":
        # Claude wants a user turn's tool results before anything else in it.
        blocks = sorted(blocks, key=lambda b: b.get("type") != "tool_result")
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return {"role": role, "content": blocks[0]["text"]}
    return {"role": role, "content": blocks}


def _text_only(content: Any, param: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" \
                    or not isinstance(part.get("text"), str):
                raise InvalidField(f"{param}.content[{i}] must be a text part here.",
                                   param=f"{param}.content")
            texts.append(part["text"])
        return "\n".join(t for t in texts if t)
    raise InvalidField(f"{param}.content must be a string or an array of parts.",
                       param=f"{param}.content")


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidField(f"{param}.content must be a string or an array of parts.",
                           param=f"{param}.content")
    blocks = []
    for i, part in enumerate(content):
        where = f"{param}.content[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), where))
        elif kind == "file":
            blocks.append(_document(part.get("file"), where))
        else:
            raise InvalidField(f"{where} has type {kind!r}, which cannot be translated for Claude "
                               "models.", param=where,
                               hint="Claude takes text, image_url and PDF file parts.")
    return blocks


def _image(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidField(f"{where}.image_url.url must be a string.", param=where)
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = _data_url(url, where)
    if media_type not in _IMAGE_TYPES:
        raise InvalidField(f"{where} is a {media_type or 'untyped'} image; Claude reads "
                           f"{', '.join(_IMAGE_TYPES)}.", param=where)
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document(file: Any, where: str) -> dict[str, Any]:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str):
        raise InvalidField(f"{where}: Claude reads files sent inline (file.file_data as a data: "
                           "URL), not by file_id.", param=where,
                           hint="Send the PDF as file_data: data:application/pdf;base64,...")
    media_type, data = _data_url(data_url, where)
    if media_type != "application/pdf":
        raise InvalidField(f"{where} is {media_type or 'untyped'}; Claude reads PDF files.",
                           param=where)
    return {"type": "document",
            "source": {"type": "base64", "media_type": media_type, "data": data}}


def _data_url(url: str, where: str) -> tuple[str | None, str]:
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise InvalidField(f"{where} must be an http(s) URL or a base64 data: URL.", param=where)
    data = match[2]
    try:
        binascii.a2b_base64(data[:64].encode())  # a cheap sanity check; Anthropic decodes it all
    except (binascii.Error, ValueError):
        raise InvalidField(f"{where} is not valid base64.", param=where) from None
    return match[1], data


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, list):
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            key = "refusal" if kind == "refusal" else "text"
            if kind not in ("text", "refusal") or not isinstance(part.get(key), str):
                raise InvalidField(f"{param}.content[{i}] cannot be translated for Claude models.",
                                   param=f"{param}.content",
                                   hint="Assistant messages carry text and tool_calls.")
            if part[key]:
                blocks.append({"type": "text", "text": part[key]})
    elif isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif content is not None:
        raise InvalidField(f"{param}.content must be a string or an array of parts.",
                           param=f"{param}.content")
    if message.get("audio") or message.get("function_call"):
        raise InvalidField(f"{param} has audio or a function_call, which cannot be translated "
                           "for Claude models.", param=param, hint="Use tool_calls.")
    for i, call in enumerate(message.get("tool_calls") or []):
        where = f"{param}.tool_calls[{i}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                or not isinstance(call.get("id"), str):
            raise InvalidField(f"{where} must have an id and a function with a name.",
                               param=where)
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise InvalidField(f"{where}.function.arguments must be a JSON object: Claude takes "
                               "tool inputs as objects.", param=where)
        blocks.append({"type": "tool_use", "id": _tool_id(call["id"]), "name": function["name"],
                       "input": parsed})
    return blocks


def _tool_result(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidField(f"{param} (role tool) needs the tool_call_id it answers.",
                           param=f"{param}.tool_call_id")
    text = _text_only(message.get("content"), param)
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(call_id)}
    if text:
        block["content"] = text
    return block


def _tool_id(call_id: str) -> str:
    """Claude's tool ids are [a-zA-Z0-9_-]+; ids minted by other providers may not be."""
    return _TOOL_ID_BAD.sub("_", call_id)


# --- response -----------------------------------------------------------------------------------


def finish_reason(stop_reason: Any) -> str:
    return {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
            "model_context_window_exceeded": "length", "tool_use": "tool_calls",
            "refusal": "content_filter"}.get(stop_reason, "stop")


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


# --- errors -------------------------------------------------------------------------------------

# Anthropic error type -> (status, OpenAI type, OpenAI code)
_ERRORS: dict[str, tuple[int, str, str]] = {
    "invalid_request_error": (400, "invalid_request_error", "invalid_request"),
    "authentication_error": (401, "authentication_error", "invalid_api_key"),
    "billing_error": (402, "insufficient_quota", "billing_error"),
    "permission_error": (403, "permission_error", "permission_denied"),
    "not_found_error": (404, "invalid_request_error", "not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    "api_error": (500, "api_error", "server_error"),
    "timeout_error": (504, "api_error", "upstream_timeout"),
    "overloaded_error": (503, "api_error", "overloaded"),
}


def map_error(kind: str | None, message: str, status: int) -> tuple[int, dict[str, Any]]:
    """(OpenAI status, OpenAI error object) for an Anthropic error of `kind`."""
    known = _ERRORS.get(kind or "")
    if known is None:
        new_status = 503 if status == 529 else status
        error_type = "invalid_request_error" if status < 500 else "api_error"
        code = kind or f"upstream_http_{status}"
    else:
        new_status, error_type, code = known
        if kind == "invalid_request_error" and status == 413:
            new_status, code = 413, "request_too_large"
    if code == "invalid_request" and _CONTEXT_OVERFLOW.search(message):
        code = "context_length_exceeded"  # what OpenAI says, and what a router falls back on
    elif kind == "not_found_error" and message.startswith("model:"):
        code = "model_not_found"
    return new_status, {"message": message, "type": error_type, "param": None, "code": code}


def error_to_openai(status: int, body: bytes) -> tuple[int, bytes]:
    """An Anthropic error answer -> (status, OpenAI error envelope)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        kind = error.get("type") if isinstance(error.get("type"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else ""
    else:
        kind, message = None, ""
    if not message:
        message = f"Anthropic answered HTTP {status}" + ("." if kind is None else f" ({kind}).")
    new_status, mapped = map_error(kind, message, status)
    return new_status, orjson.dumps({"error": mapped})


def mapped_status(status: int) -> int:
    """The status the client sees for an Anthropic status (529 overloaded is not HTTP)."""
    return 503 if status == 529 else status


# --- stream -------------------------------------------------------------------------------------


class StreamTranslator:
    """Anthropic SSE bytes in, OpenAI chat.completion.chunk SSE bytes out, incrementally.

    `feed` takes whatever the connection delivered and returns the OpenAI events it completes;
    `finish` the rest at the end. After `message_stop`: the finishing chunk, the usage chunk
    (with `include_usage`) and `data: [DONE]`. An `error` event becomes OpenAI's mid-stream
    `data: {"error": {...}}` (after a usage chunk, if the message had started, so what was
    spent is counted) and ends the translation.
    """

    __slots__ = ("_buffer", "_created", "_done", "_finish", "_id", "_include_usage", "_model",
                 "_started", "_tools", "_usage")

    def __init__(self, *, include_usage: bool = True, created: int | None = None):
        self._include_usage = include_usage
        self._buffer = b""
        self._created = int(time.time()) if created is None else created
        self._id = "msg_unknown"
        self._model = ""
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self._finish: str | None = None
        self._started = False
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, chunk: bytes) -> bytes:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        start = 0
        while not self._done:
            end = buffer.find(b"\n\n", start)
            if end == -1:
                break
            self._event(buffer[start:end], out)
            start = end + 2
        self._buffer = b"" if self._done else buffer[start:]
        return b"".join(out)

    def finish(self) -> bytes:
        """At the end of the upstream stream: a last event without its blank line, if any."""
        rest, self._buffer = self._buffer, b""
        if rest.strip() and not self._done:
            out: list[bytes] = []
            self._event(rest.rstrip(b"\n"), out)
            return b"".join(out)
        return b""

    def _event(self, raw: bytes, out: list[bytes]) -> None:
        name = None
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode("latin-1")
        if not data:
            return
        try:
            event = orjson.loads(b"\n".join(data))
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type") or name
        if kind == "message_start":
            self._message_start(event.get("message") or {}, out)
        elif kind == "content_block_start":
            self._block_start(event, out)
        elif kind == "content_block_delta":
            self._block_delta(event, out)
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            if delta.get("stop_reason"):
                self._finish = finish_reason(delta["stop_reason"])
            self._merge_usage(event.get("usage"))
        elif kind == "message_stop":
            out.append(self._chunk({}, self._finish or "stop"))
            if self._include_usage:
                out.append(self._usage_chunk())
            out.append(b"data: [DONE]\n\n")
            self._done = True
        elif kind == "error":
            if self._started and self._include_usage:
                out.append(self._usage_chunk())
            error = event.get("error")
            if not isinstance(error, dict):
                error = {}
            _, mapped = map_error(error.get("type"), str(error.get("message") or "Stream error."),
                                  500)
            out.append(b"data: " + orjson.dumps({"error": mapped}) + b"\n\n")
            self._done = True
        # ping, content_block_stop and event types added later carry nothing to translate

    def _message_start(self, message: dict[str, Any], out: list[bytes]) -> None:
        self._id = message.get("id") or self._id
        self._model = message.get("model") or self._model
        self._merge_usage(message.get("usage"))
        self._started = True
        out.append(self._chunk({"role": "assistant", "content": "", "refusal": None}))

    def _block_start(self, event: dict[str, Any], out: list[bytes]) -> None:
        block = event.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            out.append(self._chunk({"content": block["text"]}))
        elif block.get("type") == "tool_use":
            position = self._tools[event.get("index", -1)] = len(self._tools)
            call = {"index": position, "id": block.get("id", ""), "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""}}
            out.append(self._chunk({"tool_calls": [call]}))

    def _block_delta(self, event: dict[str, Any], out: list[bytes]) -> None:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            out.append(self._chunk({"content": delta["text"]}))
        elif kind == "input_json_delta" and delta.get("partial_json"):
            position = self._tools.get(event.get("index", -1))
            if position is not None:
                call = {"index": position, "function": {"arguments": delta["partial_json"]}}
                out.append(self._chunk({"tool_calls": [call]}))
        # thinking_delta, signature_delta, citations_delta: no OpenAI counterpart

    def _merge_usage(self, usage: Any) -> None:
        """message_delta's counts are cumulative: the latest non-null value of each wins."""
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        frame: dict[str, Any] = {
            "id": self._id, "object": "chat.completion.chunk", "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            frame["usage"] = None
        return b"data: " + orjson.dumps(frame) + b"\n\n"

    def _usage_chunk(self) -> bytes:
        frame = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                 "model": self._model, "choices": [],
                 "usage": openai_usage(self._usage)}
        return b"data: " + orjson.dumps(frame) + b"\n\n"
