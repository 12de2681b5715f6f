"""Bounded label values: only names the gateway itself knows, each label capped.

A label value is a public key id, a team, an environment, a route, a provider or a model the
config names; a model a client made up (or one a provider's pattern let through) is `other`.
Each label keeps the first `cap` values it sees (`metrics.max_label_values`); later ones are
counted as `other`, so 10,000 keys make at most `cap` series per label, never 10,000.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keystead.live import Live

__all__ = ["OTHER", "LabelCap", "known_models"]

OTHER = "other"


class LabelCap:
    """The values one label may take: the first `cap` seen keep their name."""

    __slots__ = ("cap", "seen")

    def __init__(self, cap: int):
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if value is None:
            return ""
        if value in self.seen:
            return value
        if len(self.seen) >= self.cap:
            return OTHER
        self.seen.add(value)
        return value


def known_models(live: Live) -> frozenset[str]:
    """Model names the config makes known: providers' listed models (patterns are not names),
    the routes' names and their deployments' models."""
    names: set[str] = set()
    for provider in live.providers.providers.values():
        names.update(provider.listed_models)
    for name, route in live.routes.routes.items():
        names.add(name)
        names.update(d.model for d in route.all_deployments())
    return frozenset(names)
