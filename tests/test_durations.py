"""parse_duration: durations as people write them."""

from __future__ import annotations

import pytest

from keystead.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("12h", 43_200.0),
        ("30d", 2_592_000.0),
        ("2w", 1_209_600.0),
        ("0s", 0.0),
        ("1.5h", 5_400.0),
        ("0.5d", 43_200.0),
        (" 30 d ", 2_592_000.0),
        ("2W", 1_209_600.0),
        ("15M", 900.0),
    ],
)
def test_durations_in_every_unit(text, seconds):
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    "text",
    ["", "90", "s", "m15", "-5s", "+5s", "1.5", "1.h", ".5h", "5y", "5 days", "5ms", "1e3s",
     "1h30m", "ten s", "5\u00a0s\u00a0x"],
)
def test_anything_else_is_refused_with_the_accepted_forms(text):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message
    assert "90s, 15m, 12h, 30d or 2w" in message
