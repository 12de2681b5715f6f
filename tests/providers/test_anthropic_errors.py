"""Anthropic errors -> OpenAI's statuses, envelopes and codes."""

from __future__ import annotations

import orjson
import pytest

from keystead.providers.anthropic_errors import error_to_openai
from openapi_schemas import validate


def anthropic_error(kind: str, message: str = "boom") -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message},
                         "request_id": "req_1"})


@pytest.mark.parametrize(("status", "kind", "new_status", "code"), [
    (400, "invalid_request_error", 400, "invalid_request"),
    (401, "authentication_error", 401, "invalid_api_key"),
    (403, "permission_error", 403, "permission_denied"),
    (404, "not_found_error", 404, "not_found"),
    (413, "request_too_large", 413, "request_too_large"),
    (429, "rate_limit_error", 429, "rate_limit_exceeded"),
    (500, "api_error", 500, "server_error"),
    (529, "overloaded_error", 503, "overloaded"),
    (504, "timeout_error", 504, "upstream_timeout"),
    (409, "conflict_error", 409, "conflict_error"),
])
def test_errors_map_to_openai_statuses_and_codes(status, kind, new_status, code):
    mapped_status, body = error_to_openai(status, anthropic_error(kind))
    assert mapped_status == new_status
    validate(orjson.loads(body), "ErrorResponse")
    assert orjson.loads(body)["error"]["code"] == code
    assert orjson.loads(body)["error"]["message"] == "boom"


def test_prompt_too_long_is_a_context_length_error_and_unknown_models_are_named():
    _, body = error_to_openai(400, anthropic_error(
        "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"))
    assert orjson.loads(body)["error"]["code"] == "context_length_exceeded"
    _, body = error_to_openai(404, anthropic_error("not_found_error", "model: claude-nope"))
    assert orjson.loads(body)["error"]["code"] == "model_not_found"


def test_an_error_that_is_not_json_still_gets_an_openai_envelope():
    status, body = error_to_openai(502, b"<html>Bad gateway</html>")
    error = orjson.loads(body)["error"]
    assert status == 502 and error["code"] == "upstream_http_502"
    assert error["message"] == "Anthropic answered HTTP 502."


def test_an_overloaded_529_without_an_anthropic_body_is_still_a_503():
    status, body = error_to_openai(529, b"<html>Overloaded</html>")
    error = orjson.loads(body)["error"]
    assert status == 503 and error["type"] == "api_error"
    assert error["code"] == "upstream_http_529"
