"""The cache key: which requests may share an answer.

`cache_key(endpoint, body, tenant=...)` is `"{tenant}:{endpoint}:{sha256 hex}"`, the hash taken
over the request's canonical JSON (orjson, keys sorted at every depth) after the fields that do
not change the answer are dropped. The tenant and endpoint lead the key so tenants never share
an entry and a tenant's (or one endpoint's) entries can be flushed by prefix (`key_prefix`).
Tenant isolation is the caller's choice of `tenant` (a team, a key): a shared cache is a tenant
everybody names. Headers are never part of the key (request ids, `Cache-Control`: the caller
decides whether to look up at all).

What is kept: everything else, including fields this module has never heard of. A deny-list of
answer-neutral fields, not an allow-list of answer-changing ones, so that a new or vendor
parameter (`top_k`, `repetition_penalty`, `verbosity`, a new OpenAI field) splits the cache
instead of silently serving one setting's answer to another: the worst case is a miss, never a
wrong hit. Values are taken as sent (exact match): `"temperature": 1` and `1.0`, or a string
`content` and the same text as one text part, are different keys; an absent parameter is not
replaced by its default, since defaults differ between providers.

Dropped (they do not change the answer):
- `stream`, `stream_options`: a stored answer replays as JSON or as a stream (`replay`), with or
  without the usage chunk, whatever the original was.
- `user`, `safety_identifier`, `metadata`: who is asking (abuse monitoring) and tags for the
  provider's dashboard.
- `prompt_cache_key`, `prompt_cache_retention`, `prompt_cache_options`: hints to the provider's
  own prompt cache; they change cost and latency, not the tokens produced.
- `service_tier`: the processing lane (latency, price), not the model or its output. A hit is
  served from no lane at all; the stored body still says which lane made it and the saved cost
  is what that lane charged.
- `background: false` (the default) for the Responses API.
Kept on purpose: `store`. It changes no token, but the answer's id is then retrievable upstream
(and usable as a Responses `previous_response_id`); keeping it in the key means a client that
asks for a stored answer gets the id of one that was stored, never that of an unstored twin.

Not cacheable (`None`): what a stored body cannot answer correctly again.
- A body that is not a JSON object, has no string `model`, or an endpoint other than
  chat.completions, embeddings, responses.
- Chat with audio output (`modalities` containing "audio", or `audio` set): the audio has an
  upstream id that expires, it is large, and its stream deltas are not replayed.
- Responses with `previous_response_id` or `conversation`: the input lives on the provider and
  is not in the body (a conversation also grows with every call: a hit would skip the append).
- Responses with `background: true`: the answer is a queued job to poll, not a result.
- Responses with a `prompt` template and no `version`: the template's current version can change
  upstream under the same body.
- Responses with a tool the provider runs itself with side effects or private state (`mcp`,
  `code_interpreter`, `image_generation`, a `shell` not declared `local`, and any tool type not
  known to be safe). Tools the client runs (`function`, `custom`, `local_shell`, `apply_patch`,
  `computer`...) and read-only hosted searches (`file_search`, `web_search`) are fine: replaying
  a tool call is exactly what the client would have received.
Cacheable, though one might think otherwise:
- `n > 1`, streamed or not: the stored completion has every choice; the replay streams them one
  after the other, each with its index, which the SDKs accumulate alike.
- `logprobs`/`top_logprobs`: they are part of the stored body and replayed with the stream.
- A non-zero `temperature`: caching is opt-in per route; whoever turns it on accepts that a
  sampled answer is reused for the TTL (and `n` or `seed` still split the key).

Cost: ~10 µs for a 2 KB chat body (parse, filter, sorted dump, sha256); see tests/cache.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

__all__ = ["CACHEABLE_ENDPOINTS", "KEY_VERSION", "cache_key", "key_prefix"]

CACHEABLE_ENDPOINTS = frozenset({"chat.completions", "embeddings", "responses"})
# Part of the hashed text: changing the normalisation bumps it, and old entries just stop matching.
KEY_VERSION = b"keystead-cache-v1\n"

_DROP = frozenset({
    "stream", "stream_options", "user", "safety_identifier", "metadata", "service_tier",
    "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options",
})
# Tool types the Responses API lets the model call without a side effect on the provider:
# run by the client (the answer is the call), or read-only hosted searches.
_SAFE_RESPONSE_TOOLS = frozenset({
    "function", "custom", "namespace", "local_shell", "apply_patch", "computer",
    "computer_use_preview", "file_search", "web_search", "web_search_2025_08_26",
    "web_search_preview", "web_search_preview_2025_03_11", "tool_search",
})


def cache_key(endpoint: str, body: bytes | dict[str, Any], *, tenant: str) -> str | None:
    """The key under which this request's answer is stored, or None if it must not be cached.

    `body` is the request as sent upstream (bytes, or already parsed; a dict is not modified).
    """
    if endpoint not in CACHEABLE_ENDPOINTS:
        return None
    if isinstance(body, dict):
        request = body
    else:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(request) is not dict:
            return None
    if not isinstance(request.get("model"), str):
        return None
    if endpoint == "chat.completions":
        if not _chat_replayable(request):
            return None
    elif endpoint == "responses" and not _responses_replayable(request):
        return None
    kept = {k: v for k, v in request.items() if k not in _DROP}
    if endpoint == "responses" and "background" in kept:
        del kept["background"]  # only false or null gets here
    try:
        canonical = orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # a dict from the caller with something JSON cannot hold
        return None
    return f"{_escape(tenant)}:{endpoint}:{hashlib.sha256(KEY_VERSION + canonical).hexdigest()}"


def key_prefix(tenant: str, endpoint: str | None = None) -> str:
    """The prefix of every key of `tenant` (and `endpoint`): what `delete_prefix` flushes."""
    prefix = _escape(tenant) + ":"
    return prefix if endpoint is None else f"{prefix}{endpoint}:"


def _escape(tenant: str) -> str:
    # ":" separates the parts of a key: a tenant named "a:responses" must not be able to reach
    # into tenant "a"'s entries, nor a prefix flush of "a" into theirs.
    if ":" in tenant or "%" in tenant:
        return tenant.replace("%", "%25").replace(":", "%3A")
    return tenant


def _chat_replayable(request: dict[str, Any]) -> bool:
    if request.get("audio") is not None:
        return False
    modalities = request.get("modalities")
    return not (isinstance(modalities, list) and "audio" in modalities)


def _responses_replayable(request: dict[str, Any]) -> bool:
    if request.get("previous_response_id") or request.get("conversation"):
        return False
    if request.get("background"):
        return False
    prompt = request.get("prompt")
    if prompt is not None and not (isinstance(prompt, dict) and prompt.get("version")):
        return False
    tools = request.get("tools")
    if tools:
        if not isinstance(tools, list):
            return False
        for tool in tools:
            if not isinstance(tool, dict):
                return False
            kind = tool.get("type")
            if kind == "shell":
                environment = tool.get("environment")
                if not (isinstance(environment, dict) and environment.get("type") == "local"):
                    return False
            elif kind not in _SAFE_RESPONSE_TOOLS:
                return False
    return True
