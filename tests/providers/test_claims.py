"""Which provider answers a name several claim: the precedence rules, and how they are told."""

from __future__ import annotations

import pytest

from keystead.providers.claims import Claim, best, claims_from_views, claims_of, describe, shadows


def claims(*providers: tuple[str, list[str], bool, str]) -> list[Claim]:
    return claims_of(providers)


@pytest.mark.parametrize(("providers", "model", "winner", "why"), [
    # A mock listing a real name loses to a real provider's pattern, whatever the order.
    ([("mock", ["gpt-4o-mini"], True, "config"), ("openai", ["gpt-*"], False, "store")],
     "gpt-4o-mini", "openai", "a real provider comes before a mock"),
    # A listed name beats a pattern, even from a provider added at run time.
    ([("openai", ["gpt-*"], False, "config"), ("azure", ["gpt-4o"], False, "store")],
     "gpt-4o", "azure", "a listed name comes before a pattern"),
    ([("openai", ["gpt-*"], False, "config"), ("azure", ["gpt-4o*"], False, "store")],
     "gpt-4o-mini", "azure", "the more specific pattern comes first"),
    ([("a", ["gpt-4o"], False, "config"), ("b", ["gpt-4o"], False, "store")],
     "gpt-4o", "a", "the config file comes before providers added at run time"),
    ([("a", ["gpt-*"], False, "config"), ("b", ["gpt-*"], False, "config")],
     "gpt-4o", "a", "it comes first in the config file"),
    ([("a", ["gpt-*"], False, "store"), ("b", ["gpt-*"], False, "store")],
     "gpt-4o", "a", "it was added first"),
])
def test_the_first_claim_by_the_rules_wins_and_says_why(
        providers: list[tuple[str, list[str], bool, str]], model: str, winner: str,
        why: str) -> None:
    found = claims_of(providers)
    claim = best(found, model)
    assert claim is not None and claim.provider == winner
    # The same rules, reported: one shadow naming the winner and the reason.
    (shadow,) = [s for s in shadows(found) if s.winner.provider == winner]
    assert shadow.why == why
    assert [loser.provider for loser in shadow.losers] != [winner]


def test_no_claim_no_winner_and_one_provider_shadows_nothing() -> None:
    found = claims(("openai", ["gpt-*", "o1*"], False, "store"))
    assert best(found, "claude-3") is None
    assert best(found, "o1-mini") is not None
    assert shadows(found) == []


def test_patterns_that_only_cross_are_not_reported_but_still_resolve() -> None:
    found = claims(("a", ["gpt-4o-*"], False, "config"), ("b", ["*-mini"], False, "config"))
    assert shadows(found) == []
    claim = best(found, "gpt-4o-mini")
    assert claim is not None and claim.provider == "a"  # 7 literal characters against 5


def test_describe_groups_names_and_says_how_to_reach_the_loser() -> None:
    found = claims(("mock", ["gpt-4o-mini", "text-embedding-3-small", "mock-chat"], True,
                    "config"),
                   ("openai", ["gpt-*", "text-embedding-*"], False, "store"))
    (line,) = describe(shadows(found))
    assert line == ("gpt-4o-mini, text-embedding-3-small: openai answers, not mock (a real "
                    "provider comes before a mock); mock/gpt-4o-mini still reaches mock")


def test_two_providers_with_the_same_default_patterns_are_one_line() -> None:
    defaults = ["gpt-*", "chatgpt-*", "o1*"]
    found = claims(("openai", defaults, False, "store"), ("openai2", defaults, False, "store"))
    (line,) = describe(shadows(found))
    assert line.startswith("gpt-*, chatgpt-*, o1*: openai answers, not openai2 (it was added "
                           "first)")


def test_views_of_unusable_providers_claim_nothing() -> None:
    views = [{"name": "mock", "type": "mock", "source": "config", "status": "ok",
              "models": ["gpt-4o"]},
             {"name": "openai", "type": "openai", "source": "store", "status": "unusable",
              "models": ["gpt-*"]}]
    found = claims_from_views(views)
    claim = best(found, "gpt-4o")
    assert claim is not None and claim.provider == "mock" and claim.mock
    assert shadows(found) == []
