"""Parse: read the body once, under a size limit, and decode only the fields policy needs.

msgspec decodes straight into small structs and skips every other field without building it;
the original bytes are what goes upstream. The structs declare the ranges and the character set
of what they read (an output cap of at least 1, a model name without control characters), so
msgspec enforces them while it decodes; `pipeline/validate.py` adds depth and duplicate fields.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec

from keystead.errors import BodyTooLarge, InvalidField, InvalidJSON, RequestTimeout
from keystead.pipeline.validate import MAX_OUTPUT_TOKENS, check_body
from keystead.providers.base import Endpoint
from keystead.providers.names import MAX_MODEL_CHARS, MODEL_CHARS, MODEL_PATTERN

# Set in a request's scope by the HTTP protocol when it cut the body off (server/protocol.py).
BODY_TIMED_OUT = "keystead.body_timed_out"

__all__ = ["BODY_TIMED_OUT", "ChatView", "CountTokensView", "EmbeddingsView", "MessagesView",
           "ResponsesView", "decode_view", "read_body"]


# msgspec.Raw cannot sit in a union with None; a raw JSON null is the "absent" value.
_NULL = msgspec.Raw(b"null")

Model = Annotated[str, msgspec.Meta(pattern=MODEL_PATTERN)]
# What a request may ask to generate: 0 or a negative number would be charged as a credit.
OutputCap = Annotated[int, msgspec.Meta(ge=1, le=MAX_OUTPUT_TOKENS)]
Choices = Annotated[int, msgspec.Meta(ge=1, le=128)]  # OpenAI's own bound for `n`


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatView(msgspec.Struct):
    model: Model
    messages: msgspec.Raw
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: OutputCap | None = None
    max_completion_tokens: OutputCap | None = None
    # What llama.cpp's and Hugging Face's OpenAI-compatible servers read before max_tokens:
    # caps too, or a key's cap could be walked around through them.
    n_predict: OutputCap | None = None
    max_new_tokens: OutputCap | None = None
    n: Choices | None = None
    tools: msgspec.Raw = _NULL
    response_format: msgspec.Raw = _NULL


class EmbeddingsView(msgspec.Struct):
    model: Model
    input: msgspec.Raw


class ResponsesView(msgspec.Struct):
    model: Model
    input: msgspec.Raw = _NULL
    stream: bool | None = None
    max_output_tokens: OutputCap | None = None
    background: bool | None = None


class MessagesView(msgspec.Struct):
    """Anthropic's Messages API request (passed through): max_tokens is required there too."""

    model: Model
    messages: msgspec.Raw
    max_tokens: OutputCap
    system: msgspec.Raw = _NULL
    stream: bool | None = None


class CountTokensView(msgspec.Struct):
    model: Model
    messages: msgspec.Raw
    system: msgspec.Raw = _NULL


_DECODERS: dict[Endpoint, msgspec.json.Decoder[Any]] = {
    Endpoint.CHAT: msgspec.json.Decoder(ChatView),
    Endpoint.EMBEDDINGS: msgspec.json.Decoder(EmbeddingsView),
    Endpoint.RESPONSES: msgspec.json.Decoder(ResponsesView),
    Endpoint.MESSAGES: msgspec.json.Decoder(MessagesView),
    Endpoint.COUNT_TOKENS: msgspec.json.Decoder(CountTokensView),
}


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int,
                    declared: int | None = None, scope: dict[str, Any] | None = None,
                    ) -> bytes:
    """The whole body, at most `limit` bytes. `declared`: the Content-Length header; one above
    the limit is refused before a byte is read.

    A body that does not arrive in time is cut off by the HTTP protocol (server/protocol.py:
    `server.body_timeout_s`), which marks the request's `scope` before it closes the connection:
    the disconnect that follows is then a 408, recorded as such, not a client that left. (No
    timer of the request's own: most bodies are whole in the first message.)"""
    if declared is not None and declared > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if scope is not None and scope.get(BODY_TIMED_OUT):
                raise RequestTimeout("The request body did not arrive in time.",
                                     hint="Send the whole body at once; a proxy in front of "
                                          "keystead should buffer it.")
            raise InvalidJSON("The client closed the connection before sending the whole body.")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"The request body is larger than this key may send ({limit} bytes).",
                        hint="Send fewer or smaller messages, or ask for a higher max_body_bytes.")


def decode_view(endpoint: Endpoint, body: bytes) -> Any:
    if not body:
        raise InvalidJSON("The request body is empty.",
                          hint="Send a JSON object, e.g. {\"model\": ..., \"messages\": [...]}.")
    try:
        view = _DECODERS[endpoint].decode(body)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidJSON(
            f"We could not parse the JSON body of your request ({exc}).",
            hint="Send valid JSON with Content-Type: application/json.",
        ) from None
    except RecursionError:
        raise InvalidJSON("The request body is nested too deeply.",
                          hint="Real requests nest a few levels; flatten the structure.") from None
    except UnicodeDecodeError:
        raise InvalidJSON("The request body is not valid UTF-8.",
                          hint="Send JSON encoded as UTF-8.") from None
    if not body.isascii():  # msgspec skips what it does not decode: JSON is UTF-8 throughout
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJSON("The request body is not valid UTF-8.",
                              hint="Send JSON encoded as UTF-8.") from None
    check_body(body)
    return view


_BOUND = re.compile(r"Expected `int` ([<>]=) (-?\d+)")


def _invalid(error: str) -> InvalidField | InvalidJSON:
    param = _param(error)
    message = error.split(" - at ", 1)[0]
    if message.startswith("Object missing required field"):
        return InvalidField(f"Missing required parameter: '{param}'.", param=param,
                            code="missing_required_parameter")
    if message.startswith("Expected `object`") and param is None:
        return InvalidJSON("The request body must be a JSON object.")
    bound = _BOUND.match(message)
    if bound is not None:
        least = bound.group(1) == ">="
        return InvalidField(f"'{param}' must be {'at least' if least else 'at most'} "
                            f"{bound.group(2)}.", param=param,
                            hint="Ask for a positive number of tokens."
                            if least and param and param.endswith("tokens") else None)
    if param == "model" and message.startswith("Expected `str` matching"):
        return InvalidField(
            f"The model name must be 1 to {MAX_MODEL_CHARS} of the characters {MODEL_CHARS}, "
            "with no '.' or '..' path segment.", param="model", code="invalid_model_name",
            hint="Send a model name such as gpt-4o-mini or a route name.")
    return InvalidField(f"Invalid value for '{param}': {message}.", param=param)


def _param(message: str) -> str | None:
    if "`" in message and "field" in message.split(" - at ", 1)[0]:
        return message.split("`")[1]
    if " - at `$." in message:
        return message.rsplit(" - at `$.", 1)[1].rstrip("`").replace("[", ".").replace("]", "")
    return None
