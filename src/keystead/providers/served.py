"""Which model names the providers and routes serve, from their names and `models` lists alone.

The rules are the registry's (`ProviderRegistry._find`, over `claims`): a route's alias; a name a
provider lists whole (`meta-llama/Llama-3-8B`, slash included); `provider/model` naming a provider
that serves `model` by its list or patterns (never another provider's pattern); or a name one of
the providers' entries matches. No adapter is built and no key is read, so the CLI can warn
about a key scoped to a model nothing serves without starting the gateway's runtime
(tests/providers/test_served.py holds these rules equal to the registry's).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence

from keystead.providers.claims import Claim, is_pattern

__all__ = ["is_pattern", "serves", "unserved"]


def serves(model: str, providers: Mapping[str, Sequence[str]],
           routes: Iterable[str] = ()) -> bool:
    """Whether a request for `model` finds a provider (name -> its `models`) or a route."""
    if model in set(routes):
        return True
    claims = [Claim(name, entry, False, 0) for name, models in providers.items()
              for entry in models]
    prefix, slash, rest = model.partition("/")
    if slash and prefix in providers:
        return any(c.exact and c.matches(model) for c in claims) \
            or any(c.provider == prefix and c.matches(rest) for c in claims)
    return any(c.matches(model) for c in claims)


def unserved(scope: Iterable[str], providers: Mapping[str, Sequence[str]],
             routes: Iterable[str] = ()) -> list[str]:
    """The entries of a key's model scope that no request could use. A scope pattern counts as
    served when it matches a listed model or a route, or when some provider serves by pattern
    (two patterns may overlap: no warning rather than a wrong one)."""
    aliases = list(routes)
    listed = [m for models in providers.values() for m in models if not is_pattern(m)]
    by_pattern = any(is_pattern(m) for models in providers.values() for m in models)
    missing = []
    for entry in scope:
        if not is_pattern(entry):
            found = serves(entry, providers, aliases)
        else:
            prefix, slash, _ = entry.partition("/")
            found = by_pattern or bool(slash and prefix in providers) or any(
                fnmatch.fnmatchcase(name, entry) for name in (*listed, *aliases))
        if not found:
            missing.append(entry)
    return missing
