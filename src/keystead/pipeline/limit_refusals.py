"""What a refused request is told: which limit, how much is left, when to retry, in
OpenAI's x-ratelimit-* headers and a message a person can act on."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import NoReturn
from zoneinfo import ZoneInfo

from keystead.errors import BudgetExceeded, RateLimited
from keystead.pipeline.limit_rules import MINUTE, NANO_PER_USD, BudgetRule, Scope
from keystead.state.counters import Admission, Rate, RateReading

__all__ = ["format_reset", "ratelimit_headers", "refuse", "usd"]

_PERIOD_WORD = {"day": "daily", "month": "monthly"}


def format_reset(seconds: float) -> str:
    """OpenAI's reset format: 20ms, 1s, 6m0s, 1h2m3s."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def usd(nanousd: int | Decimal) -> str:
    return format((Decimal(nanousd) / NANO_PER_USD).quantize(Decimal("0.000001")), "f")


def refuse(admission: Admission, scopes: list[Scope], request_rates: list[Rate],
           token_rates: list[Rate], budgets: list[BudgetRule], tokens: int, *, now: float,
           zone: ZoneInfo) -> NoReturn:
    """Raise the refusal `admission` stands for: BudgetExceeded or RateLimited, with the
    x-ratelimit-* headers and Retry-After, naming the kind of scope that refused (metrics)."""
    try:
        _refuse(admission, scopes, request_rates, token_rates, budgets, tokens, now=now,
                zone=zone)
    except RateLimited as refusal:
        where = _where(admission.refused_by or "")
        refusal.scope_kind = next((s.kind for s in scopes if where == [s.kind, s.value]),
                                  "key")
        raise


def _where(name: str) -> list[str]:
    # Names are "rate:<kind>:<value>:<unit>" and "pool:<what>:<kind>:<value>[:<period>]".
    parts = name.split(":")
    return parts[1:3] if parts[0] == "rate" else parts[2:4]


def _refuse(admission: Admission, scopes: list[Scope], request_rates: list[Rate],
            token_rates: list[Rate], budgets: list[BudgetRule], tokens: int, *, now: float,
            zone: ZoneInfo) -> NoReturn:
    name = admission.refused_by or ""
    ticket_headers = ratelimit_headers(admission.rates, {r.name for r in token_rates})
    where = _where(name)
    scope = next((s for s in scopes if where == [s.kind, s.value]), None)
    label = scope.label if scope else "this key"
    for budget in budgets:
        if budget.hold.name == name:
            pool = admission.pool
            used = pool.used if pool else 0
            reserved = pool.reserved if pool else 0
            limits = budget.scope.limits
            resets_at = budget.hold.resets_at or now
            reset = datetime.fromtimestamp(resets_at, zone).isoformat(timespec="minutes")
            period = _PERIOD_WORD[limits.budget_period]
            raise BudgetExceeded(
                f"The {period} budget of ${usd(budget.hold.capacity)} for "
                f"{label} does not cover this request: ${usd(used)} spent, "
                f"${usd(reserved)} held by requests in flight, this request may cost up to "
                f"${usd(budget.hold.amount)}.",
                hint=f"The budget resets at {reset} ({zone.key}). Ask your "
                     "platform team to raise it, or lower max_tokens.",
                retry_after_s=max(1.0, resets_at - now), retry=False,
                headers=ticket_headers)
    if name.startswith("pool:inflight:"):
        limit = scope.limits.max_parallel if scope else None
        raise RateLimited(
            f"Concurrency limit reached for {label}: at most {limit} requests at once.",
            code="concurrency_limit_exceeded", retry_after_s=1.0,
            hint="Retry when one of the requests in flight has finished.",
            headers=ticket_headers)
    rate = next((r for r in (*request_rates, *token_rates) if r.name == name), None)
    unit = "requests" if rate in request_rates else "tokens"
    window = "minute" if rate is not None and rate.window_s == MINUTE else "day"
    limit_text = f"{rate.limit} {unit} per {window}" if rate else "its limit"
    if math.isinf(admission.retry_after_s):
        raise RateLimited(
            f"This request needs about {tokens} tokens, more than the {limit_text} allowed "
            f"for {label}.",
            hint="Send a shorter prompt or a lower max_tokens.", retry=False,
            headers=ticket_headers)
    raise RateLimited(
        f"Rate limit reached for {label}: {limit_text}.",
        hint=f"Retry in {admission.retry_after_s:.2f}s; if this is steady traffic, ask your "
             "platform team to raise the limit.",
        retry_after_s=admission.retry_after_s, headers=ticket_headers)


def ratelimit_headers(readings: tuple[RateReading, ...], token_names: set[str]
                      ) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for kind, group in (("requests", [r for r in readings if r.name not in token_names]),
                        ("tokens", [r for r in readings if r.name in token_names])):
        if not group:
            continue
        tightest = min(group, key=lambda r: (r.remaining, -r.reset_s))
        out += [(f"x-ratelimit-limit-{kind}".encode(), str(tightest.limit).encode()),
                (f"x-ratelimit-remaining-{kind}".encode(), str(tightest.remaining).encode()),
                (f"x-ratelimit-reset-{kind}".encode(), format_reset(tightest.reset_s).encode())]
    return out
