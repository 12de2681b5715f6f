"""An OpenAI chat completions request -> an Anthropic Messages request (`chat_to_messages`).

A pure function (no I/O). System and developer messages are hoisted into `system`, same-role
turns merged; tool calls and tool results become tool_use and tool_result blocks, image and PDF
parts image and document blocks; options take their Anthropic names (max_tokens is required
there: `DEFAULT_MAX_TOKENS` when the client sent none). What has no Anthropic equivalent is
refused with a 400 naming the field (`InvalidField`), never dropped in a way that changes what
the client gets back; a few OpenAI-only hints are dropped (`_DROPPED`).

docs/providers.md is the reader's version of the rules below.
"""

from __future__ import annotations

import binascii
import re
from typing import Any

import orjson

from keystead.errors import InvalidField

__all__ = ["DEFAULT_MAX_TOKENS", "chat_to_messages"]

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
            if value and not isinstance(value, list):
                raise InvalidField("tools must be an array of tool definitions.", param=name,
                                   hint='Send e.g. [{"type": "function", "function": {...}}].')
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
