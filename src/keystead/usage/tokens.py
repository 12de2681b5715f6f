"""Exact offline token counting with OpenAI's tokenizers (tiktoken).

The rank files ship inside the package (see data/NOTICE.md) and are checked against tiktoken's
published hashes; nothing is downloaded. Encodings load lazily, and they are large (o200k_base:
76-79 MB of RSS once loaded), so a serving gateway uses them only for the context-window
pre-check of a prompt near a route's smallest window (pipeline/window.py). Usage estimates (no
usage reported, a stream cut short) use usage/approx_tokens.py, which the tests measure
against this module.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
from functools import cache
from importlib import resources
from typing import Any

import tiktoken

from keystead.usage.approx_tokens import chat_prompt_tokens

__all__ = ["count_chat_prompt", "count_text", "encoding_for_model"]

_O200K_PAT = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

_ENCODINGS: dict[str, tuple[str, str, dict[str, int]]] = {
    "o200k_base": (
        _O200K_PAT,
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    "cl100k_base": (
        _CL100K_PAT,
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
         "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
    ),
}
_LOCK = threading.Lock()

# Older families use cl100k_base; everything newer (gpt-4o, gpt-4.1, gpt-5, o-series) o200k_base.
_CL100K_PREFIXES = ("gpt-4-", "gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada")
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


@cache
def _load(name: str) -> tiktoken.Encoding:
    pattern, expected, special = _ENCODINGS[name]
    data = gzip.decompress(
        resources.files("keystead.usage").joinpath(f"data/{name}.tiktoken.gz").read_bytes())
    if hashlib.sha256(data).hexdigest() != expected:
        raise RuntimeError(f"shipped tokenizer file {name} is corrupt (hash mismatch)")
    ranks = {base64.b64decode(token): int(rank)
             for token, rank in (line.split() for line in data.splitlines() if line)}
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens=special)


def encoding_for_model(model: str) -> tiktoken.Encoding:
    name = model.rsplit("/", 1)[-1].lower()
    encoding = "o200k_base"
    if name.startswith(_CL100K_PREFIXES) and not name.startswith(_O200K_PREFIXES):
        encoding = "cl100k_base"
    with _LOCK:  # first load builds a 200k-entry table; do it once
        return _load(encoding)


def count_text(text: str, model: str) -> int:
    return len(encoding_for_model(model).encode(text, disallowed_special=()))


def count_chat_prompt(messages: Any, model: str, tools: Any = None) -> int:
    """Prompt tokens of a chat request, by OpenAI's published counting recipe
    (approx_tokens.chat_prompt_tokens), each text counted by `model`'s own tokenizer."""
    encoding = encoding_for_model(model)
    return chat_prompt_tokens(messages, tools,
                              lambda text: len(encoding.encode(text, disallowed_special=())))
