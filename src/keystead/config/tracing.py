"""`tracing:` OpenTelemetry traces over OTLP/HTTP (docs/monitoring.md).

Every value is checked here, where it enters: the endpoint is an http(s) URL with a host and no
credentials in it (a URL is logged; credentials go in `headers`), header names are HTTP tokens
and their values secrets written as references (`${VAR}`, enforced by the loader) without line
breaks, the service name is a short plain name.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from keystead.config.strict import Strict

__all__ = ["TracingConfig"]

_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
# Visible ASCII and spaces: a CR or LF in a header value would start another header.
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,4096}")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Headers the exporter sets itself (or that would change how the request is framed).
_RESERVED = frozenset(("content-type", "content-length", "content-encoding", "host",
                       "transfer-encoding", "connection"))


class TracingConfig(Strict):
    enabled: bool = False
    # The collector's OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces
    endpoint: str | None = None
    # Sent with every export (a hosted collector's API key): values are references (${VAR}).
    headers: dict[str, SecretStr] = Field(default_factory=dict, max_length=16)
    # Of the traces this gateway starts; a client's sampled flag (traceparent) is followed.
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    service_name: str = "keystead"
    # One export request at most this long (retries included); shutdown waits no longer.
    timeout_s: float = Field(5.0, gt=0.0, le=60.0)
    # Spans wait in memory (a full queue drops new ones, never blocks a request) and go in
    # batches of `batch_size` every `flush_interval_s`.
    queue_max: int = Field(2048, ge=1, le=1_000_000)
    batch_size: int = Field(512, ge=1, le=100_000)
    flush_interval_s: float = Field(2.0, gt=0.0, le=60.0)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > 2048 or not value.isascii() or any(c.isspace() or ord(c) < 0x20
                                                            for c in value):
            raise ValueError("must be a URL of printable ASCII without spaces, at most 2048 "
                             "characters")
        try:
            parts = urlsplit(value)
            port = parts.port  # a port that is not a number raises
        except ValueError:
            raise ValueError("is not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("must start with http:// or https:// (OTLP over HTTP, e.g. "
                             "http://127.0.0.1:4318/v1/traces)")
        if not parts.hostname:
            raise ValueError("names no host (e.g. http://collector:4318/v1/traces)")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not hold credentials: put them in tracing.headers as a "
                             "reference (e.g. authorization: ${OTLP_TOKEN})")
        if port == 0:
            raise ValueError("port 0 is not a port")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError("header names are letters, digits and '-' (at most 64)")
            if name.lower() in _RESERVED:
                raise ValueError(f"header {name} is set by the exporter itself")
            # The message names the header, never the value.
            if not _HEADER_VALUE.fullmatch(secret.get_secret_value()):
                raise ValueError(f"the value of header {name} must be 1 to 4096 printable "
                                 "ASCII characters (no line breaks)")
        return value

    @field_validator("service_name")
    @classmethod
    def _service_name(cls, value: str) -> str:
        if not _SERVICE_NAME.fullmatch(value):
            raise ValueError("letters, digits, '.', '_' and '-', at most 64, starting with a "
                             "letter or digit")
        return value

    @model_validator(mode="after")
    def _complete(self) -> TracingConfig:
        if self.enabled and self.endpoint is None:
            raise ValueError("tracing.enabled needs tracing.endpoint (the collector's OTLP/HTTP "
                             "traces URL, e.g. http://127.0.0.1:4318/v1/traces)")
        if self.batch_size > self.queue_max:
            raise ValueError("tracing.batch_size cannot exceed tracing.queue_max")
        return self
