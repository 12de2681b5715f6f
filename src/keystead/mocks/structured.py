"""What a model's structured answers hold in the mocks: which function it calls, with which
arguments, and JSON that follows (or, for the `schema` fault, breaks) a requested schema.

Shared by the OpenAI mock's chat completions and Responses API (`mocks.content`,
`mocks.responses`) and the Anthropic mock. Pure functions of the request, like the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["ToolOffer", "pick_tool", "sample_instance", "shape_text", "tool_arguments",
           "violating_instance"]


@dataclass(frozen=True, slots=True)
class ToolOffer:
    """A function tool on offer: its name and its parameters' JSON schema."""

    name: str
    parameters: Any


def pick_tool(
    offers: list[ToolOffer], mode: str, named: str | None, answered: bool
) -> ToolOffer | None:
    """The function the mock calls, on either API, so agent loops end as they do with a model:

    - `mode` "none", or no function on offer: none (text);
    - a named function (`named`): that one (the first on offer if it is not);
    - "required": the first on offer, always;
    - "auto": the first on offer, unless the conversation ends with tool results (`answered`):
      then the model answers them in text, as the Anthropic mock does.
    """
    if not offers or mode == "none":
        return None
    if named is not None:
        return next((offer for offer in offers if offer.name == named), offers[0])
    if mode == "auto" and answered:
        return None
    return offers[0]


def tool_arguments(tool: ToolOffer) -> str:
    return orjson.dumps(sample_instance(tool.parameters or {"type": "object"})).decode()


def shape_text(content: str, kind: Any, schema: Any, *, off_schema: bool = False) -> str:
    """Reply text in the requested format: `{"reply": content}` for json_object, an instance
    of `schema` for json_schema (one it rejects when `off_schema`), else `content` itself."""
    if kind == "json_object" and not off_schema:
        return orjson.dumps({"reply": content}).decode()
    if kind == "json_schema":
        schema = schema or {"type": "object"}
        instance = violating_instance(schema) if off_schema else sample_instance(schema)
        return orjson.dumps(instance).decode()
    return content


# --- JSON-schema instances ------------------------------------------------------------------


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
