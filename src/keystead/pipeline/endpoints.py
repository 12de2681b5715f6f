"""The data plane's routes, and what each endpoint's request says about its output.

Every per-endpoint rule of the request line lives in this table: the method, whether the API
is Anthropic's own (its errors take Anthropic's envelope), and which fields carry the
request's output cap. The cap check, the token charge and the budget reservation read it
through `EndpointSpec.requested_output`, so a new endpoint states its fields once here and gets
all three with no code of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from keystead.errors import InvalidField
from keystead.providers.endpoints import Endpoint

__all__ = ["PATHS", "EndpointSpec", "find_endpoint"]


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    endpoint: Endpoint
    method: str
    # Fields that cap what the request may generate. Every one that is present is checked
    # against the key's cap, and the largest is charged: a provider that reads the other field
    # must not get more than was allowed.
    cap_fields: tuple[str, ...] = ()
    # The field the key's cap (or the budget's default) is written into when none is present;
    # None where the API requires one (Anthropic's max_tokens) or has none.
    cap_write: str | None = None
    native: bool = False  # Anthropic's own API, answered in its own envelope
    # Fields this gateway does not serve when set (truthy): (field, why), a 400 naming it.
    refused: tuple[tuple[str, str], ...] = ()

    def check_refused(self, view: object) -> None:
        for name, why in self.refused:
            if getattr(view, name, None):
                raise InvalidField(f"'{name}' is not supported here.", param=name,
                                   code="unsupported_parameter", hint=why)

    def requested_output(self, view: object) -> tuple[int | None, str | None]:
        """The largest output cap the request asks for, and the field that holds it."""
        largest: int | None = None
        field: str | None = None
        for name in self.cap_fields:
            value = getattr(view, name, None)
            if value is not None and (largest is None or value > largest):
                largest, field = value, name
        return largest, field


PATHS: dict[str, EndpointSpec] = {
    "/v1/chat/completions": EndpointSpec(
        Endpoint.CHAT, "POST",
        # n_predict, max_new_tokens: what llama.cpp's and Hugging Face's servers read first
        cap_fields=("max_completion_tokens", "max_tokens", "n_predict", "max_new_tokens"),
        cap_write="max_tokens"),
    "/v1/embeddings": EndpointSpec(Endpoint.EMBEDDINGS, "POST"),
    "/v1/responses": EndpointSpec(
        Endpoint.RESPONSES, "POST", cap_fields=("max_output_tokens",),
        cap_write="max_output_tokens",
        # A background response goes on generating after its first answer, where keystead
        # cannot count it (and GET /v1/responses/{id} is not served).
        refused=(("background", "Background responses cannot be counted against limits and "
                                "budgets through keystead; send the request without it."),)),
    "/v1/models": EndpointSpec(Endpoint.MODELS, "GET"),
    "/v1/keystead/tokens": EndpointSpec(Endpoint.TOKENS, "POST"),
    "/v1/messages": EndpointSpec(Endpoint.MESSAGES, "POST", cap_fields=("max_tokens",),
                                 native=True),
    "/v1/messages/count_tokens": EndpointSpec(Endpoint.COUNT_TOKENS, "POST", native=True),
}
_MODEL = PATHS["/v1/models"]


def find_endpoint(path: str) -> tuple[EndpointSpec | None, str | None]:
    """The endpoint of `path`, and the model id of `/v1/models/{id}`."""
    route = PATHS.get(path)
    if route is None and path.startswith("/v1/models/"):
        return _MODEL, path[len("/v1/models/"):]
    return route, None
