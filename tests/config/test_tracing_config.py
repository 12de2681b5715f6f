"""`tracing:` refuses what must not reach a URL, a header or a span, and its header values
are secrets written as references."""

from __future__ import annotations

from typing import Any

import pytest

from keystead.config.load import ConfigError, parse_config

ENV = {"KEYSTEAD_MASTER_KEY": "x" * 44, "OTLP_KEY": "Bearer abc.def-123"}


def _tracing(**values: Any) -> Any:
    return parse_config({"tracing": values}, ENV, source="test").tracing


def _refused(**values: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        _tracing(**values)
    return str(caught.value)


def test_off_by_default_and_on_with_an_endpoint() -> None:
    assert _tracing().enabled is False
    on = _tracing(enabled=True, endpoint="https://otel.example.com:4318/v1/traces",
                  headers={"authorization": "${OTLP_KEY}"}, sample_ratio=0.25)
    assert on.headers["authorization"].get_secret_value() == "Bearer abc.def-123"
    assert "abc.def" not in repr(on)


def test_enabled_needs_an_endpoint() -> None:
    assert "tracing.endpoint" in _refused(enabled=True)


@pytest.mark.parametrize("endpoint", [
    "ftp://collector/v1/traces", "collector:4318", "http:///v1/traces",
    "http://user:pw@collector:4318/v1/traces", "http://collector:99999/v1/traces",
    "http://collector:4318/v1/traces\r\nX-Evil: 1", "http://collèctor/v1/traces",
    "http://collector/" + "a" * 3000, "http://collector:0/v1/traces",
])
def test_bad_endpoints_are_refused(endpoint: str) -> None:
    message = _refused(endpoint=endpoint)
    assert "tracing.endpoint" in message
    assert "pw@" not in message


def test_credentials_in_the_url_point_to_headers() -> None:
    assert "tracing.headers" in _refused(endpoint="http://u:secretpw@collector/v1/traces")


def test_header_values_must_be_references() -> None:
    message = _refused(headers={"authorization": "Bearer raw-secret-in-file"})
    assert "tracing.headers.authorization" in message and "raw secret" in message
    assert "raw-secret-in-file" not in message


def test_env_form_of_a_reference_is_resolved() -> None:
    assert _tracing(headers={"x-api-key": "env:OTLP_KEY"}).headers["x-api-key"] \
        .get_secret_value() == "Bearer abc.def-123"


@pytest.mark.parametrize("headers", [
    {"bad name": "${OTLP_KEY}"}, {"x" * 65: "${OTLP_KEY}"}, {"content-type": "${OTLP_KEY}"},
    {"x-key": "${NEWLINE}"}, {f"h{i}": "${OTLP_KEY}" for i in range(17)},
])
def test_bad_headers_are_refused(headers: dict[str, str]) -> None:
    env = {**ENV, "NEWLINE": "abc\r\nX-Evil: 1"}
    with pytest.raises(ConfigError) as caught:
        parse_config({"tracing": {"headers": headers}}, env, source="test")
    assert "X-Evil" not in str(caught.value)


@pytest.mark.parametrize("values", [
    {"sample_ratio": 1.5}, {"sample_ratio": -0.1}, {"service_name": "gw prod"},
    {"service_name": "ключ"}, {"service_name": ""}, {"timeout_s": 0}, {"timeout_s": 600},
    {"queue_max": 0}, {"batch_size": 100, "queue_max": 10}, {"unknown": 1},
])
def test_out_of_range_values_are_refused(values: dict[str, Any]) -> None:
    _refused(**values)
