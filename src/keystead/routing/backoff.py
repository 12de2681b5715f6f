"""How long to wait before trying again: decorrelated jitter, and the provider's own word.

Decorrelated jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): each wait is
uniform in [base, 3 x the previous wait], capped. It spreads a crowd of retrying clients better
than full jitter while still growing exponentially. The random source is injected, so a test
can name the exact schedule.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

__all__ = ["Backoff", "retry_after_s"]


class Backoff:
    __slots__ = ("_base", "_cap", "_previous", "_rng")

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None):
        self._base = base_s
        self._cap = cap_s
        self._previous = base_s
        self._rng = rng or random.Random()

    def next_wait(self) -> float:
        wait = min(self._cap, self._rng.uniform(self._base, self._previous * 3))
        self._previous = max(wait, self._base)
        return wait


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The provider's requested wait: `retry-after-ms` (OpenAI's, finer) before `retry-after`
    (seconds; an HTTP date is not honoured: providers do not send one)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None
