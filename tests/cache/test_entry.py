"""A cache entry survives its trip through bytes, and an entry it cannot read is a miss."""

from __future__ import annotations

from decimal import Decimal

import orjson

from keystead.cache.entry import CachedResponse
from keystead.usage.prices import TokenUsage

BODY = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                     "model": "gpt-4o-mini-2024-07-18", "choices": [],
                     "usage": {"prompt_tokens": 12, "completion_tokens": 5,
                               "total_tokens": 17}})


def entry(**changes: object) -> CachedResponse:
    base = CachedResponse.build(
        "chat.completions", BODY, model="gpt-4o-mini-2024-07-18", provider="openai",
        cost_usd=Decimal("0.000004950"), usage=TokenUsage(12, 5, 2), created_at=1_750_000_000.5)
    return CachedResponse(**{f: getattr(base, f) for f in base.__struct_fields__} | changes)


def test_round_trip_keeps_every_field() -> None:
    original = entry()
    data = original.to_bytes()
    back = CachedResponse.from_bytes(data)
    assert back == original
    assert back is not None and back.body == BODY
    assert back.usage == TokenUsage(prompt_tokens=12, completion_tokens=5, cached_tokens=2)
    assert back.cost == Decimal("0.000004950") and back.cost_usd == "0.000004950"
    assert back.model == "gpt-4o-mini-2024-07-18" and back.provider == "openai"
    assert back.endpoint == "chat.completions" and back.created_at == 1_750_000_000.5


def test_serialisation_is_compact_and_binary_safe() -> None:
    body = bytes(range(256)) * 4  # not JSON, not UTF-8: still stored as it is
    data = entry(body=body).to_bytes()
    assert len(data) < len(body) + 100
    back = CachedResponse.from_bytes(data)
    assert back is not None and back.body == body


def test_cost_keeps_every_digit() -> None:
    cost = Decimal("1234.000000000123")
    e = CachedResponse.build("embeddings", b"{}", model="m", provider="p", cost_usd=cost)
    back = CachedResponse.from_bytes(e.to_bytes())
    assert back is not None and back.cost == cost
    assert back.usage == TokenUsage() and back.created_at > 1_700_000_000


def test_age_in_whole_seconds_never_negative() -> None:
    e = entry()
    assert e.age_s(now=e.created_at + 61.9) == 61
    assert e.age_s(now=e.created_at - 5) == 0


def test_unreadable_or_foreign_bytes_are_a_miss() -> None:
    good = entry().to_bytes()
    for data in (b"", b"\x00", b"\x02" + good[1:], good[:-3], b"\x01garbage", b"{}"):
        assert CachedResponse.from_bytes(data) is None
