"""`metrics:` the Prometheus endpoint (docs/monitoring.md)."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from keystead.config.strict import Strict

__all__ = ["MetricsConfig"]

# A bearer token is sent in a header: visible ASCII only, and long enough not to be guessed.
_TOKEN = re.compile(r"[\x21-\x7e]{16,512}")


class MetricsConfig(Strict):
    enabled: bool = True
    # A bearer token for GET /metrics (a reference: ${VAR}); None: open to whoever reaches it.
    token: SecretStr | None = None
    # Values each label may take before the rest are counted as "other" (bounded cardinality).
    max_label_values: int = Field(100, ge=1, le=10_000)

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TOKEN.fullmatch(value.get_secret_value()):
            # The message never quotes the token.
            raise ValueError("the metrics token must be 16 to 512 visible ASCII characters "
                             "(no spaces); generate one with `openssl rand -hex 32`")
        return value
