"""Backoff: decorrelated jitter within [base, 3 x previous], capped; Retry-After parsing."""

from __future__ import annotations

import random

from keystead.routing.backoff import Backoff, retry_after_s


def test_decorrelated_jitter_grows_within_its_bounds_and_stays_under_the_cap():
    backoff = Backoff(0.2, 5.0, random.Random(7))
    previous = 0.2
    waits = []
    for _ in range(50):
        wait = backoff.next_wait()
        assert 0.2 <= wait <= min(5.0, previous * 3) + 1e-9
        previous = max(wait, 0.2)
        waits.append(wait)
    assert max(waits) > 2.0  # it does grow towards the cap
    assert max(waits) <= 5.0


def test_the_schedule_is_exact_for_a_seeded_random_source():
    first = [Backoff(0.1, 2.0, random.Random(1)).next_wait() for _ in range(1)]
    again = [Backoff(0.1, 2.0, random.Random(1)).next_wait() for _ in range(1)]
    assert first == again
    rng = random.Random(3)
    expected_rng = random.Random(3)
    backoff = Backoff(0.1, 2.0, rng)
    previous = 0.1
    for _ in range(5):
        expected = min(2.0, expected_rng.uniform(0.1, previous * 3))
        assert backoff.next_wait() == expected
        previous = max(expected, 0.1)


def test_retry_after_prefers_milliseconds_and_ignores_nonsense():
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}) is None
    assert retry_after_s({"retry-after": "-1"}) is None
    assert retry_after_s({}) is None
