"""Structured output (P18): is the answer valid for the `response_format` it was asked for?

`json_object` asks for one JSON object; `json_schema` for JSON valid against a schema, which
jsonschema (the reference validator) checks, with the draft the schema names (2020-12 when it
names none). Validators are compiled once per distinct schema. A refusal (`message.refusal`)
and a tool call are valid answers: the model did what OpenAI documents it may do.

The schema is the client's, so it is handled as hostile: it is checked against its draft's
metaschema when the request arrives (an invalid one is a 400), a `$ref` resolves only inside
the schema (jsonschema would otherwise fetch a URL of the client's choosing from the gateway's
network), and `pattern` / `patternProperties` run on RE2, which takes linear time (Python's
`re` backtracks: `^(a+)+$` against 30 characters takes seconds of the event loop). A pattern
RE2 cannot run (backreferences, lookaround) is not checked. A schema that fails while checking
an answer lets the answer through, logged: never a 500.
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from typing import Any

import orjson

from keystead.errors import InvalidField
from keystead.routing.router import Judge

__all__ = ["SchemaJudge", "judge_for"]

log = logging.getLogger("keystead.routing")

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
        try:
            return _best_error(_validator(_schema_key(self._schema)), value)
        except Exception:  # a $ref to nowhere, a keyword its value breaks: cannot be judged
            log.warning("the answer could not be checked against its schema; passed on",
                        exc_info=True)
            return None

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
        if not isinstance(schema, dict):
            return SchemaJudge("json_schema", None)
        _validator(_schema_key(schema))  # an invalid schema is refused before any call
        return SchemaJudge("json_schema", schema)
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
    """The compiled validator of a schema; InvalidField (400) when it is not a valid schema."""
    from jsonschema import validators  # loaded on the first structured request only
    from jsonschema.exceptions import SchemaError

    schema = _SCHEMAS[key]
    base = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        base.check_schema(schema)
    except SchemaError as exc:
        raise InvalidField(f"response_format.json_schema.schema is not a valid JSON Schema: "
                           f"{exc.message[:200]}.", param="response_format",
                           hint="Fix the schema; https://json-schema.org/draft/2020-12 "
                                "describes it.") from None
    cls = validators.extend(base, {"pattern": _pattern,  # type: ignore[no-untyped-call]
                                   "patternProperties": _pattern_properties})
    return cls(schema, registry=_local_only())


def _local_only() -> Any:
    """A registry that resolves no URL: a `$ref` reaches only the schema itself."""
    from referencing import Registry
    from referencing.exceptions import NoSuchResource

    def refuse(uri: str) -> Any:
        raise NoSuchResource(uri)

    return Registry(retrieve=refuse)  # type: ignore[call-arg]


def _re2(pattern: str) -> Any:
    import re2

    return _compiled(pattern, re2)


@lru_cache(maxsize=1024)
def _compiled(pattern: str, re2: Any) -> Any:
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error:
        return None  # RE2 cannot run it (a backreference, lookaround): not checked


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Any:
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "string") or not isinstance(pattern, str):
        return
    compiled = _re2(pattern)
    if compiled is not None and compiled.search(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object") or not isinstance(patterns, dict):
        return
    for pattern, subschema in patterns.items():
        compiled = _re2(pattern) if isinstance(pattern, str) else None
        if compiled is None:
            continue
        for name, value in instance.items():
            if compiled.search(name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _best_error(validator: Any, value: Any) -> str | None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
    return f"at {where}: {error.message}."
