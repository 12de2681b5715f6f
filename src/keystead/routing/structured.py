"""Structured output (P18): is the answer valid for the `response_format` it was asked for?

`json_object` asks for one JSON object; `json_schema` for JSON valid against a schema, which
jsonschema (the reference validator) checks, with the draft the schema names (2020-12 when it
names none). Validators are compiled once per distinct schema. A refusal (`message.refusal`)
and a tool call are valid answers: the model did what OpenAI documents it may do.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import orjson

from keystead.routing.router import Judge

__all__ = ["SchemaJudge", "judge_for"]

_REPAIR = ("Your previous answer was not valid: {error} Answer again with only the JSON, "
           "valid for the requested format, and nothing else.")


class SchemaJudge(Judge):
    def __init__(self, kind: str, schema: dict[str, Any] | None):
        self.kind = kind
        self._schema = schema

    def invalid(self, body: bytes) -> str | None:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return "the answer is not JSON."
        choices = document.get("choices") if isinstance(document, dict) else None
        for choice in choices if isinstance(choices, list) else ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict) or message.get("refusal"):
                continue
            content = message.get("content")
            if not isinstance(content, str):
                continue  # a tool call, or no content: nothing to check
            error = self.check(content)
            if error is not None:
                return error
        return None

    def check(self, content: str) -> str | None:
        try:
            value = orjson.loads(content)
        except orjson.JSONDecodeError:
            return "the content is not JSON."
        if self.kind == "json_object" or self._schema is None:
            return None if isinstance(value, dict) else "the content is not a JSON object."
        error = _best_error(_validator(_schema_key(self._schema)), value)
        return error

    def repair(self, sent: bytes, body: bytes, error: str) -> bytes | None:
        try:
            request = orjson.loads(sent)
            answer = orjson.loads(body)["choices"][0]["message"].get("content") or ""
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            return None
        messages = request.get("messages")
        if not isinstance(messages, list):
            return None
        request["messages"] = [*messages, {"role": "assistant", "content": answer},
                               {"role": "user", "content": _REPAIR.format(error=error)}]
        return orjson.dumps(request)


def judge_for(response_format: bytes) -> SchemaJudge | None:
    """A judge for a request's raw `response_format`, or None when it asks for plain text."""
    try:
        value = orjson.loads(response_format)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind == "json_object":
        return SchemaJudge("json_object", None)
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return SchemaJudge("json_schema", schema if isinstance(schema, dict) else None)
    return None


# Schemas are cached by their canonical text: requests carry equal schemas as new objects.
_SCHEMAS: dict[str, dict[str, Any]] = {}


def _schema_key(schema: dict[str, Any]) -> str:
    text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    key = hashlib.sha256(text).hexdigest()
    if key not in _SCHEMAS:
        if len(_SCHEMAS) > 1024:
            _SCHEMAS.clear()
        _SCHEMAS[key] = schema
    return key


@lru_cache(maxsize=256)
def _validator(key: str) -> Any:
    from jsonschema import validators  # loaded on the first structured request only

    schema = _SCHEMAS[key]
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    return cls(schema)


def _best_error(validator: Any, value: Any) -> str | None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
    return f"at {where}: {error.message}."
