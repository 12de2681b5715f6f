"""A client's JSON Schema is hostile input: the judge never fetches a `$ref` URL, refuses an
invalid schema with a 400 before any call, runs `pattern` on RE2 (linear time) and never fails
a request while checking an answer (found in review: a remote $ref was fetched from the
gateway's network, `^(a+)+$` froze the event loop, a broken schema was a 500)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import orjson
import pytest

from keystead.errors import InvalidField
from keystead.routing.structured import judge_for


def response_format(schema: object) -> bytes:
    return orjson.dumps({"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'{"type": "string"}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_a_remote_ref_is_never_fetched(listener: tuple[str, list[str]]) -> None:
    url, hits = listener
    judge = judge_for(response_format({"$ref": f"{url}/internal/secret?x=1"}))
    assert judge is not None
    assert judge.check('"anything"') is None  # cannot be judged: passed on, logged
    assert hits == []


@pytest.mark.parametrize("schema", [{"type": 5}, {"pattern": 7}, {"minLength": "x"},
                                    {"properties": []}, {"required": "name"}])
def test_an_invalid_schema_is_a_400_before_the_call(schema: object) -> None:
    with pytest.raises(InvalidField) as refused:
        judge_for(response_format(schema))
    assert refused.value.status == 400 and refused.value.param == "response_format"


def test_a_ref_to_nowhere_inside_the_schema_passes_the_answer() -> None:
    judge = judge_for(response_format({"$ref": "#/definitions/nope"}))
    assert judge is not None and judge.check('{"a": 1}') is None


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    # With Python's backtracking `re` this is 2^40 steps: the test would never finish.
    judge = judge_for(response_format({"type": "string", "pattern": "^(a+)+$"}))
    assert judge is not None
    assert judge.check(orjson.dumps("a" * 40 + "!").decode()) is not None
    assert judge.check(orjson.dumps("a" * 40).decode()) is None


def test_pattern_properties_run_on_re2_too() -> None:
    judge = judge_for(response_format({"type": "object", "patternProperties": {
        "^(x+)+$": {"type": "integer"}}}))
    assert judge is not None
    assert judge.check('{"xxx": "not an integer"}') is not None
    assert judge.check('{"xxx": 3, "y": "free"}') is None


def test_a_pattern_re2_cannot_run_is_not_checked() -> None:
    judge = judge_for(response_format({"type": "string", "pattern": r"^(a)\1$"}))
    assert judge is not None and judge.check('"ab"') is None
