"""Validate JSON against the schemas in OpenAI's published OpenAPI document.

The document lives outside the repo (`/work/shared/reference/openai-openapi.json`, relative to
this file); set `KEYSTEAD_OPENAPI_REF` to use another copy. It is OpenAPI 3.1, so its schemas
are JSON Schema 2020-12, with two OpenAPI quirks rewritten on load:

- some schemas still say `nullable: true` (OpenAPI 3.0), which 2020-12 ignores: they are
  rewritten to also accept null, as OpenAI means them;
- a `oneOf` with a `discriminator` may list overlapping alternatives (a Responses input
  message with content parts fits both `EasyInputMessage` and `InputMessage`); OpenAPI picks
  one by the discriminator, JSON Schema rejects the instance as ambiguous. Those become `anyOf`.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

__all__ = ["document", "request_schema", "validate", "validator"]

# The team's shared reference when the repository sits beside it (as in CI), else the copy
# shipped in tests/reference (same file, gzipped; see its VERSION and LICENSE).
SHARED_PATH = Path(__file__).resolve().parents[2] / "shared/reference/openai-openapi.json"
VENDORED_PATH = Path(__file__).resolve().parent / "reference/openai-openapi.json.gz"
BASE_URI = "urn:keystead:openai-openapi"


def reference_path() -> Path:
    if os.environ.get("KEYSTEAD_OPENAPI_REF"):
        return Path(os.environ["KEYSTEAD_OPENAPI_REF"])
    return SHARED_PATH if SHARED_PATH.is_file() else VENDORED_PATH


@functools.cache
def document() -> dict[str, Any]:
    path = reference_path()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return _to_json_schema(json.load(f))


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(BASE_URI, DRAFT202012.create_resource(document()))


@functools.cache
def validator(schema_name: str) -> Draft202012Validator:
    if schema_name not in document()["components"]["schemas"]:
        raise KeyError(f"no schema {schema_name!r} in {reference_path()}")
    ref = {"$ref": f"{BASE_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(ref, registry=_registry())


def validate(instance: Any, schema_name: str) -> None:
    """Raise `jsonschema.ValidationError` (the most relevant one) if `instance` doesn't fit."""
    validator(schema_name).validate(instance)


def request_schema(path: str, method: str = "post") -> str | None:
    """Name of the JSON request-body schema of an API path (`/v1/chat/completions` or without)."""
    path = path.removeprefix("/v1")
    operation = document()["paths"].get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] or None


def _to_json_schema(node: Any) -> Any:
    """Rewrite the OpenAPI quirks described above, recursively."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _to_json_schema(value) for key, value in node.items()}
    if isinstance(converted.get("discriminator"), dict) and "oneOf" in converted:
        converted["anyOf"] = converted.pop("oneOf")
    if converted.get("nullable") is True:
        del converted["nullable"]
        return {"anyOf": [converted, {"type": "null"}]}
    return converted
