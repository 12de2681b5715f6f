"""The mock's Responses API (`POST /v1/responses`): what it answers and how it streams it.

It answers as its chat completions do, so agent frameworks built on either API get through a
loop with it (`structured.pick_tool`):

- function tools on offer: a `function_call` item (arguments: an instance of the function's
  `parameters`) when `tool_choice` is "required", names a function, or is "auto" (the default)
  and the input does not end with a `function_call_output`; after one, "auto" answers in text;
- `text.format` json_schema: an `output_text` holding a JSON instance of the schema
  (json_object: `{"reply": ...}`); the `schema` fault breaks it, as on chat;
- otherwise text, cut by `max_output_tokens` (status "incomplete").

Streams follow OpenAI's event sequence: response.created, response.in_progress,
response.output_item.added, then output_text deltas inside a content part, or
function_call_arguments deltas and .done, then response.output_item.done and
response.completed (or response.incomplete), each with its `sequence_number`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keystead.mocks.content import (
    ARGUMENT_FRAGMENT,
    Directives,
    count_tokens,
    message_text,
    new_id,
    plan_text,
    split_pieces,
)
from keystead.mocks.stream import EventStream, spend
from keystead.mocks.structured import ToolOffer, pick_tool, shape_text, tool_arguments

__all__ = ["Output", "input_messages", "plan_output", "response_object", "responses_usage",
           "stream_response"]


@dataclass(frozen=True, slots=True)
class Output:
    """The one output item of an answer, finished, and what streams of it."""

    item: dict[str, Any]  # a `message` or a `function_call` item
    status: str  # the response's: "completed" or "incomplete"
    tokens: int  # output tokens
    pieces: list[str]  # text deltas, or fragments of the call's arguments


def input_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """`input` (a string or a list of items) and `instructions`, as chat-like messages for the
    prompt and its token count: a function call is the assistant's, its output a tool's."""
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else \
        raw if isinstance(raw, list) else []
    messages = [_as_message(item) for item in items if isinstance(item, dict)]
    if isinstance(body.get("instructions"), str):
        messages.insert(0, {"role": "system", "content": body["instructions"]})
    return messages


def _as_message(item: dict[str, Any]) -> dict[str, Any]:
    kind = item.get("type")
    if kind == "function_call":
        return {"role": "assistant", "content": str(item.get("arguments", ""))}
    if kind == "function_call_output":
        output = item.get("output")
        return {"role": "tool", "content": output if isinstance(output, str)
                else message_text(output)}
    return item


def plan_output(body: dict[str, Any], prompt: str, directives: Directives, *,
                off_schema: bool = False) -> Output:
    tool = pick_tool(*_tools(body))
    if tool is not None:
        arguments = tool_arguments(tool)
        item = {"type": "function_call", "id": new_id("fc_"), "call_id": new_id("call_"),
                "name": tool.name, "arguments": arguments, "status": "completed"}
        fragments = [arguments[i:i + ARGUMENT_FRAGMENT]
                     for i in range(0, len(arguments), ARGUMENT_FRAGMENT)]
        return Output(item, "completed", count_tokens(tool.name) + count_tokens(arguments),
                      fragments)
    content, finish = plan_text(prompt, directives, body.get("max_output_tokens"))
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        content, finish = shape_text(content, fmt["type"], fmt.get("schema"),
                                     off_schema=off_schema), "stop"
    pieces = split_pieces(content)
    part: dict[str, Any] = {"type": "output_text", "text": content, "annotations": [],
                            "logprobs": []}
    message = {"type": "message", "id": new_id("msg_"), "status": "completed",
               "role": "assistant", "content": [part]}
    return Output(message, "completed" if finish == "stop" else "incomplete", len(pieces), pieces)


def _tools(body: dict[str, Any]) -> tuple[list[ToolOffer], str, str | None, bool]:
    """The function tools (hosted tools are not the mock's to call), `tool_choice` as (mode,
    named function), and whether the input ends with a function's output."""
    offers = [ToolOffer(tool["name"], tool.get("parameters"))
              for tool in body.get("tools") or []
              if isinstance(tool, dict) and tool.get("type") == "function"
              and isinstance(tool.get("name"), str)]
    choice = body.get("tool_choice", "auto")
    mode, named = (choice, None) if isinstance(choice, str) else ("none", None)
    if isinstance(choice, dict) and choice.get("type") == "function":
        mode, named = "required", choice.get("name")
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        names = {t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)}
        offers, mode = [o for o in offers if o.name in names], str(choice.get("mode", "auto"))
    items = body.get("input")
    answered = isinstance(items, list) and bool(items) and isinstance(items[-1], dict) \
        and items[-1].get("type") == "function_call_output"
    return offers, mode, named, answered


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
        "tools": [_echoed_tool(tool) for tool in body.get("tools") or []],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "metadata": body.get("metadata") or {},
    }


def _echoed_tool(tool: Any) -> Any:
    """A function tool as OpenAI echoes it: `strict` (default true) and `description` filled in."""
    if not isinstance(tool, dict) or tool.get("type") != "function":
        return tool
    return {"description": None, "parameters": None, **tool, "strict": tool.get("strict", True)}


def responses_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


async def stream_response(
    stream: EventStream, response: dict[str, Any], output: Output, directives: Directives
) -> None:
    """The event sequence, each as `event: <type>` + `data: {...}` (no [DONE])."""
    sequence = 0

    async def emit(kind: str, **fields: Any) -> None:
        nonlocal sequence
        await stream.send_json({"type": kind, **fields, "sequence_number": sequence}, event=kind)
        sequence += 1

    # Snapshots before completion carry no usage: the schema's `usage` is not nullable.
    pending = {k: v for k, v in response.items() if k != "usage"}
    pending |= {"status": "in_progress", "completed_at": None, "incomplete_details": None}
    pending["output"] = []
    await emit("response.created", response=pending)
    await emit("response.in_progress", response=pending)
    item = output.item
    budget = directives.disconnect_after
    if item["type"] == "function_call":
        where = {"item_id": item["id"], "output_index": 0}
        await emit("response.output_item.added", output_index=0,
                   item={**item, "arguments": "", "status": "in_progress"})
        for fragment in output.pieces:
            budget = spend(budget)
            await emit("response.function_call_arguments.delta", **where, delta=fragment)
        spend(budget, final=True)
        await emit("response.function_call_arguments.done", **where, name=item["name"],
                   arguments=item["arguments"])
    else:
        where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        part = item["content"][0]
        await emit("response.output_item.added", output_index=0,
                   item={**item, "status": "in_progress", "content": []})
        await emit("response.content_part.added", **where, part={**part, "text": ""})
        for piece in output.pieces:
            budget = spend(budget)
            await emit("response.output_text.delta", **where, delta=piece, logprobs=[])
        spend(budget, final=True)
        await emit("response.output_text.done", **where, text=part["text"], logprobs=[])
        await emit("response.content_part.done", **where, part=part)
    await emit("response.output_item.done", output_index=0, item=item)
    done = "response.completed" if response["status"] == "completed" else "response.incomplete"
    await emit(done, response=response)
    await stream.end()
