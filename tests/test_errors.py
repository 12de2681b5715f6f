"""errors.py: a 405 carries the Allow header its path needs."""

from __future__ import annotations

import orjson

from keystead.errors import MethodNotAllowed, render


def test_a_405_names_the_allowed_methods_in_its_allow_header() -> None:
    error = MethodNotAllowed("/v1/chat/completions accepts POST, not GET.", allow=["POST"])
    assert error.status == 405 and error.headers() == [(b"allow", b"POST")]
    assert orjson.loads(render(error))["error"]["code"] == "method_not_allowed"
    several = MethodNotAllowed("x", allow=("GET", "PATCH"))
    assert several.headers() == [(b"allow", b"GET, PATCH")]


def test_without_allowed_methods_no_allow_header_is_made_up() -> None:
    assert MethodNotAllowed("x").headers() == []
