"""Which provider answers a model name that several providers claim, and why.

Each entry of a provider's `models` is a claim: a name (`gpt-4o`) or a pattern (`gpt-4o*`).
Of the claims that match a model name, the first by these rules wins:

1. a real provider before a mock: the mock never answers a name a real provider serves
   (`mock/NAME` or a route still reaches it: that is choosing the mock);
2. a listed name before a pattern;
3. the more specific pattern first (more literal characters: `gpt-4o*` before `gpt-*`);
4. the config file before providers added at run time; then file order, or the order added.

The registry resolves with these rules; `providers add`, `providers list` and `serve` report
with them, so what they say is what the gateway does. Pure and stdlib-only: the CLI imports it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Claim", "Shadow", "best", "claims_from_views", "claims_of", "describe", "is_pattern",
           "reason", "shadows"]

_WILDCARDS = frozenset("*?[")


def is_pattern(entry: str) -> bool:
    return any(char in _WILDCARDS for char in entry)


@dataclass(frozen=True, slots=True)
class Claim:
    provider: str
    entry: str  # a model name or a pattern
    mock: bool
    position: int  # the provider's place: config file order, then run-time providers as added
    source: str = "config"  # "config" or "store": only for explaining position

    @property
    def exact(self) -> bool:
        return not is_pattern(self.entry)

    @property
    def literal(self) -> int:
        """How specific a pattern is: its characters that are not wildcards."""
        return sum(char not in _WILDCARDS for char in self.entry)

    @property
    def rank(self) -> tuple[bool, bool, int, int]:
        """Lower wins (the rules of the module docstring, in order)."""
        return (self.mock, not self.exact, -self.literal, self.position)

    def matches(self, model: str) -> bool:
        return model == self.entry if self.exact else fnmatch.fnmatchcase(model, self.entry)


def claims_of(providers: Iterable[tuple[str, Sequence[str], bool, str]]) -> list[Claim]:
    """The claims of (name, models, is_mock, source) in resolution order."""
    return [Claim(name, entry, mock, position, source)
            for position, (name, models, mock, source) in enumerate(providers)
            for entry in dict.fromkeys(models)]


def best(claims: Iterable[Claim], model: str) -> Claim | None:
    """The claim that answers `model`, or None when no provider serves it."""
    found: Claim | None = None
    for claim in claims:
        if claim.matches(model) and (found is None or claim.rank < found.rank):
            found = claim
    return found


def reason(winner: Claim, loser: Claim) -> str:
    """Why `winner` comes before `loser`, in a few words."""
    if winner.mock != loser.mock:
        return "a real provider comes before a mock"
    if winner.exact != loser.exact:
        return "a listed name comes before a pattern"
    if winner.literal != loser.literal:
        return "the more specific pattern comes first"
    if winner.source != loser.source:
        return "the config file comes before providers added at run time"
    if winner.source == "config":
        return "it comes first in the config file"
    return "it was added first"


@dataclass(frozen=True, slots=True)
class Shadow:
    """A name (or the names of a pattern) several providers claim; `winner` answers them."""

    name: str
    winner: Claim
    losers: tuple[Claim, ...]

    @property
    def why(self) -> str:
        return "; ".join(dict.fromkeys(reason(self.winner, loser) for loser in self.losers))


def shadows(claims: Sequence[Claim]) -> list[Shadow]:
    """Every listed name and pattern that more than one provider claims, with its winner.

    A pattern overlaps another when it is the same or the other one matches it (`gpt-4o*`
    within `gpt-*`); patterns that only cross (`gpt-*`, `*-mini`) are not found here.
    """
    found: dict[str, Shadow] = {}
    for claim in claims:
        if claim.entry in found:
            continue
        if claim.exact:
            rivals = [c for c in claims if c.matches(claim.entry)]
        else:
            rivals = [c for c in claims if not c.exact
                      and (c.entry == claim.entry or fnmatch.fnmatchcase(claim.entry, c.entry))]
        by_provider: dict[str, Claim] = {}
        for rival in sorted(rivals, key=lambda c: c.rank):
            by_provider.setdefault(rival.provider, rival)
        if len(by_provider) > 1:
            winner, *losers = by_provider.values()
            found[claim.entry] = Shadow(claim.entry, winner, tuple(losers))
    return list(found.values())


def describe(found: Iterable[Shadow]) -> list[str]:
    """One line per (winner, losers, reason): which names, who answers them, who does not and
    why, and how to reach the others."""
    groups: dict[tuple[str, tuple[str, ...], str], list[str]] = {}
    for shadow in found:
        losers = tuple(dict.fromkeys(loser.provider for loser in shadow.losers))
        groups.setdefault((shadow.winner.provider, losers, shadow.why), []).append(shadow.name)
    lines = []
    for (winner, losers, why), names in groups.items():
        example = next((name for name in names if not is_pattern(name)), "MODEL")
        lines.append(f"{', '.join(names)}: {winner} answers, not {', '.join(losers)} ({why}); "
                     f"{losers[0]}/{example} still reaches {losers[0]}")
    return lines


def claims_from_views(views: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """Claims of providers as `providers list` and `GET /admin/providers` show them (in the
    registry's order: the config file's, then those added at run time); usable ones only."""
    return claims_of((str(view["name"]), [str(m) for m in view.get("models") or ()],
                      view.get("type") == "mock", str(view.get("source", "config")))
                     for view in views if view.get("status", "ok") == "ok")
