"""The few changes keystead makes to a request body before it goes upstream.

The client's bytes are forwarded as they are unless one of these applies:
- a streamed chat without `stream_options.include_usage`: ask for it, so usage is exact (the
  extra chunk is dropped on the way back);
- `provider/model` naming: the provider gets its own model name;
- a key with a max_tokens cap and a request without a limit: the cap is written in.
Only the first case is a byte insertion; the others re-serialise with orjson, which keeps every
field and value.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import orjson

from keystead.errors import InvalidField

if TYPE_CHECKING:
    from keystead.routing.table import Deployment

__all__ = ["BodyFactory", "BodyRewrite", "apply"]

_INCLUDE_USAGE = b'"stream_options":{"include_usage":true},'
# orjson reads integers beyond 64 bits as floats (a changed value); bodies that may hold one go
# through the standard library, which keeps integers exact. Rare, and only on the rewrite path.
_LONG_NUMBER = re.compile(rb"\d{19,}")


class BodyRewrite:
    __slots__ = ("cap_field", "cap_value", "force_usage", "model")

    def __init__(self) -> None:
        self.force_usage = False
        self.model: str | None = None
        self.cap_field: str | None = None
        self.cap_value: int | None = None

    @property
    def needed(self) -> bool:
        return self.force_usage or self.model is not None or self.cap_field is not None


def apply(body: bytes, rewrite: BodyRewrite, had_stream_options: bool) -> bytes:
    if not rewrite.needed:
        return body
    if rewrite.model is None and rewrite.cap_field is None and not had_stream_options:
        start = body.index(b"{") + 1
        return body[:start] + _INCLUDE_USAGE + body[start:]
    exact = _LONG_NUMBER.search(body) is not None
    try:
        document: dict[str, Any] = json.loads(body) if exact else orjson.loads(body)
    except ValueError:  # an integer past Python's 4,300 digits (orjson reads it as a float)
        raise InvalidField("A number in the request body has more than 4,300 digits.",
                           hint="Send numbers of a sensible size.") from None
    if rewrite.model is not None:
        document["model"] = rewrite.model
    if rewrite.cap_field is not None:
        document[rewrite.cap_field] = rewrite.cap_value
    if rewrite.force_usage:
        options = document.get("stream_options")
        document["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
    if exact:
        return json.dumps(document, separators=(",", ":")).encode()
    return orjson.dumps(document)


class BodyFactory:
    """The body each deployment gets: its own model name and max-tokens field; built once per
    distinct pair (a retry on the same deployment reuses it)."""

    __slots__ = ("_asked", "_body", "_built", "_had_options", "_rewrite")

    def __init__(self, body: bytes, rewrite: BodyRewrite, had_options: bool, asked: str):
        self._body = body
        self._rewrite = rewrite
        self._had_options = had_options
        self._asked = asked
        self._built: dict[tuple[str, str | None], bytes] = {}

    def __call__(self, deployment: Deployment) -> bytes:
        rewrite = self._rewrite
        if not rewrite.needed and deployment.model == self._asked:
            return self._body  # the common case: the client's bytes as they are
        field = rewrite.cap_field
        if field == "max_tokens" and deployment.provider.type in ("openai", "azure"):
            field = "max_completion_tokens"  # OpenAI's current name; others know the old one
        key = (deployment.model, field)
        body = self._built.get(key)
        if body is None:
            own = BodyRewrite()
            own.force_usage = rewrite.force_usage
            own.cap_field, own.cap_value = field, rewrite.cap_value
            if deployment.model != self._asked:
                own.model = deployment.model
            body = self._built[key] = apply(self._body, own, self._had_options)
        return body
