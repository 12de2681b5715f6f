"""What an adapter accepts as a model name, and how a name goes into a URL.

The data plane refuses hostile `model` values where they enter; this is the second wall, so that
an adapter is safe whatever it is handed (a config typo, a route, a future caller):

- `check_model`: a model name is 1 to 256 of `A-Z a-z 0-9 . _ - : / @ + ~` (enough for every
  provider's names: `gpt-4o-mini`, `ft:gpt-4o-mini:org::id`, `meta-llama/Llama-3-8B`,
  `claude-3-5-sonnet@20240620`, `llama3.1:8b`, `~anthropic/claude-sonnet-latest`), with no
  `.` or `..` path segment. Spaces, `?`, `#`, `%`, `\\`, quotes, control characters and
  anything outside ASCII cannot be part of one.
- `path_segment`: a name as one URL path segment, percent-escaped (`quote(safe="")`: `/`, `?`,
  `#` and `%` become `%2F`, `%3F`, `%23`, `%25`). `.`, `..` and the empty string are refused,
  because no escaping makes them safe: `%2E%2E` is `..` to yarl and to most servers.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from keystead.errors import InvalidField

__all__ = ["MAX_MODEL_CHARS", "MODEL_CHARS", "MODEL_PATTERN", "check_model", "is_model_name",
           "path_segment", "shown"]

MAX_MODEL_CHARS = 256
MODEL_CHARS = "A-Z a-z 0-9 . _ - : / @ + ~"
# One pass: the character set and length, and no `.`/`..` segment anywhere (the lookahead).
# Anchored, so the data plane's request views can declare it as is (msgspec searches).
# `\Z`, not `$`: `$` also matches before a final newline ("gpt-4o\n" would pass).
MODEL_PATTERN = rf"^(?!(?:.*/)?\.{{1,2}}(?:/|\Z))[A-Za-z0-9._:/@+~-]{{1,{MAX_MODEL_CHARS}}}\Z"
_MODEL = re.compile(MODEL_PATTERN)
_SHOWN = 64  # characters of a refused name quoted back in the message


def is_model_name(name: str) -> bool:
    return _MODEL.fullmatch(name) is not None


def check_model(model: str, provider: str) -> str:
    """`model` if it can be a model name; else a 400 `invalid_model_name` naming `provider`."""
    if not is_model_name(model):
        raise InvalidField(
            f"{shown(model)} is not a model name provider {provider} can be asked for.",
            param="model", code="invalid_model_name",
            hint=f"Model names are 1 to {MAX_MODEL_CHARS} of the characters {MODEL_CHARS}, "
                 "with no '.' or '..' path segment.")
    return model


def path_segment(value: str, provider: str, what: str = "model") -> str:
    """`value` as one percent-escaped URL path segment; `.`, `..` and "" are refused."""
    if value in ("", ".", ".."):
        raise InvalidField(f"{shown(value)} cannot be a {what} name in provider {provider}'s "
                           "URL.", param="model", code="invalid_model_name",
                           hint="Name a real model (or Azure deployment).")
    return quote(value, safe="")


def shown(value: str) -> str:
    """A name as a message quotes it: repr (control characters escaped), cut short."""
    text = repr(value[:_SHOWN])
    return text if len(value) <= _SHOWN else text + "..."
