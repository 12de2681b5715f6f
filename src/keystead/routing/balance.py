"""Which deployment of a tier takes the next attempt.

Deployments that cannot take it are left out first: an open breaker, a full `max_parallel`, a
context window the prompt certainly overflows, a provider that asked us to wait (429
Retry-After). Among the rest, those not yet tried by this request come first, so a retry goes
elsewhere when there is an elsewhere.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from keystead.routing.table import Deployment

__all__ = ["choose"]


def choose(candidates: Sequence[Deployment], strategy: str, tried: set[str],
           rng: random.Random) -> Deployment | None:
    """The deployment for the next attempt among `candidates` (already filtered for breakers,
    capacity and context), or None if there is none."""
    if not candidates:
        return None
    fresh = [d for d in candidates if d.id not in tried]
    pool = fresh or list(candidates)
    if strategy == "ordered" or len(pool) == 1:
        return pool[0]
    if strategy == "least-busy":
        least = min(d.in_flight for d in pool)
        return _weighted([d for d in pool if d.in_flight == least], rng)
    if strategy == "latency":
        unknown = [d for d in pool if d.latency_ms is None]
        if unknown:  # measure every deployment before preferring one
            return unknown[0]
        return min(pool, key=_latency)
    return _weighted(pool, rng)


def _latency(deployment: Deployment) -> float:
    return deployment.latency_ms if deployment.latency_ms is not None else 0.0


def _weighted(pool: Sequence[Deployment], rng: random.Random) -> Deployment:
    weighted = [d for d in pool if d.weight > 0]
    if not weighted:  # only weight-0 spares are left
        return pool[0]
    total = sum(d.weight for d in weighted)
    point = rng.uniform(0, total)
    for deployment in weighted:
        point -= deployment.weight
        if point <= 0:
            return deployment
    return weighted[-1]

