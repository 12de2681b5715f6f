"""Parse: read the body once, under a size limit, and decode only the fields policy needs.

msgspec decodes straight into small structs and skips every other field without building it;
the original bytes are what goes upstream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from keystead.errors import BodyTooLarge, InvalidField, InvalidJSON
from keystead.providers.base import Endpoint

__all__ = ["ChatView", "CountTokensView", "EmbeddingsView", "MessagesView", "ResponsesView",
           "decode_view", "read_body"]


# msgspec.Raw cannot sit in a union with None; a raw JSON null is the "absent" value.
_NULL = msgspec.Raw(b"null")


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatView(msgspec.Struct):
    model: str
    messages: msgspec.Raw
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int | None = None
    tools: msgspec.Raw = _NULL
    response_format: msgspec.Raw = _NULL


class EmbeddingsView(msgspec.Struct):
    model: str
    input: msgspec.Raw


class ResponsesView(msgspec.Struct):
    model: str
    input: msgspec.Raw = _NULL
    stream: bool | None = None
    max_output_tokens: int | None = None


class MessagesView(msgspec.Struct):
    """Anthropic's Messages API request (passed through): max_tokens is required there too."""

    model: str
    messages: msgspec.Raw
    max_tokens: int
    system: msgspec.Raw = _NULL
    stream: bool | None = None


class CountTokensView(msgspec.Struct):
    model: str
    messages: msgspec.Raw
    system: msgspec.Raw = _NULL


_DECODERS: dict[Endpoint, msgspec.json.Decoder[Any]] = {
    Endpoint.CHAT: msgspec.json.Decoder(ChatView),
    Endpoint.EMBEDDINGS: msgspec.json.Decoder(EmbeddingsView),
    Endpoint.RESPONSES: msgspec.json.Decoder(ResponsesView),
    Endpoint.MESSAGES: msgspec.json.Decoder(MessagesView),
    Endpoint.COUNT_TOKENS: msgspec.json.Decoder(CountTokensView),
}


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidJSON("The client closed the connection before sending the whole body.")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(
                    f"The request body is larger than this key may send ({limit} bytes).",
                    hint="Send fewer or smaller messages, or ask for a higher max_body_bytes.",
                )
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_view(endpoint: Endpoint, body: bytes) -> Any:
    if not body:
        raise InvalidJSON("The request body is empty.",
                          hint="Send a JSON object, e.g. {\"model\": ..., \"messages\": [...]}.")
    try:
        return _DECODERS[endpoint].decode(body)
    except msgspec.ValidationError as exc:
        param = _param(str(exc))
        message = str(exc).split(" - at ", 1)[0]
        if message.startswith("Object missing required field"):
            raise InvalidField(f"Missing required parameter: '{param}'.", param=param,
                               code="missing_required_parameter") from None
        if message.startswith("Expected `object`") and param is None:
            raise InvalidJSON("The request body must be a JSON object.") from None
        raise InvalidField(f"Invalid value for '{param}': {message}.", param=param) from None
    except msgspec.DecodeError as exc:
        raise InvalidJSON(
            f"We could not parse the JSON body of your request ({exc}).",
            hint="Send valid JSON with Content-Type: application/json.",
        ) from None


def _param(message: str) -> str | None:
    if "`" in message and "field" in message.split(" - at ", 1)[0]:
        return message.split("`")[1]
    if " - at `$." in message:
        return message.rsplit(" - at `$.", 1)[1].rstrip("`").replace("[", ".").replace("]", "")
    return None
