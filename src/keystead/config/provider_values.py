"""What a provider's config values may be, and what it serves when it lists no models.

Shared by the config file's model (`config/model.py`) and `providers add` (control/), so a value
is checked the same way wherever it enters. Stdlib only.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_MODELS", "check_base_url", "check_deployment", "check_model_entry",
           "default_models"]


# What a provider serves when it lists no `models`: the vendor's model families, so that
# `providers add openai --type openai` serves gpt-4o-mini (issue 12). Patterns, not a list: new
# models work the day they ship. Azure serves its deployments' model names; the mock only names
# of its own, so it can never answer a name a real provider could serve. openai-compatible
# servers (vLLM, Ollama) name their models freely: none by default, `--models` says which.
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-*", "chatgpt-*", "o1*", "o3*", "o4*", "text-embedding-*", "ft:*"),
    "anthropic": ("claude-*",),
    "gemini": ("gemini-*",),
    "mock": ("mock-chat", "mock-embedding"),
}


def default_models(provider_type: str, deployments: dict[str, str] | None = None,
                   ) -> tuple[str, ...]:
    """The models a provider of `provider_type` serves when its config lists none."""
    if provider_type == "azure":
        return tuple(deployments or ())
    return DEFAULT_MODELS.get(provider_type, ())


# A model name or pattern as a provider lists it: printable ASCII without spaces or commas
# (`--models` splits on commas), e.g. gpt-4o, llama3.1:8b, meta-llama/Llama-3-8B, ft:gpt-4o:org::1.
_MODEL_ENTRY = re.compile(r"[!-+\--~]{1,200}")


def check_model_entry(entry: str) -> str:
    """`entry` if it can be a provider's model name or pattern, else ValueError saying why."""
    if not _MODEL_ENTRY.fullmatch(entry):
        raise ValueError(f"{entry[:60]!r} is not a model name or pattern: 1 to 200 printable "
                         "ASCII characters, no spaces or commas (e.g. gpt-4o-mini, llama*)")
    return entry


def check_base_url(url: str) -> str:
    """A provider's base_url holds no credentials (they would be a secret in the config, and
    sent besides the key), else ValueError."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise ValueError("base_url is not a valid URL") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError("base_url must not hold user:password@; give the provider's key "
                         "as its api_key (--api-key-stdin, --api-key-env)")
    if not parts.hostname:
        raise ValueError("base_url has no host")
    return url


_DEPLOYMENT = re.compile(r"[A-Za-z0-9._-]{1,64}")


def check_deployment(name: str) -> str:
    """An Azure deployment name (it becomes a path segment of the URL), else ValueError."""
    if not _DEPLOYMENT.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"{name[:60]!r} is not a deployment name: 1 to 64 letters, digits, "
                         "'.', '_' or '-'")
    return name
