"""What routes share: path and query parameter types with their bounds, and the conversions of
request values into service arguments (durations, limits) with their refusals."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import Path, Query

from keystead.control.teams import apply_limit_changes
from keystead.durations import parse_duration
from keystead.errors import InvalidField
from keystead.server.admin.schemas.common import LimitsIn
from keystead.server.admin.schemas.fields import Duration
from keystead.state.records import Limits

__all__ = ["MAX_DURATION_S", "DurationQuery", "FilterQuery", "KeyPath", "LabelPath", "NamePath",
           "duration", "limits"]

# Longer than any key should live, short enough that now + it is a date (datetime ends at 9999).
MAX_DURATION_S = 100 * 365 * 86_400.0

_LINE = r"^[^\x00-\x1f\x7f]*$"
KeyPath = Annotated[str, Path(min_length=1, max_length=128, pattern=_LINE,
                              description="The key's id or name.")]
NamePath = Annotated[str, Path(min_length=1, max_length=128, pattern=_LINE)]
LabelPath = Annotated[str, Path(min_length=1, max_length=16, pattern=_LINE,
                                description="`2` or `#2`.")]


def FilterQuery(description: str) -> Any:  # a parameter declaration, like Query
    return Query(max_length=256, pattern=_LINE, description=description)


def DurationQuery(description: str) -> Any:  # a parameter declaration, like Query
    return Query(max_length=32, description=description)


def duration(text: Duration | str | None, param: str) -> float | None:
    """Seconds in `text` (None stays None), at most MAX_DURATION_S; InvalidField otherwise."""
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise InvalidField(str(exc), param=param) from None
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise InvalidField(f"{text!r} is longer than keystead accepts (100 years).", param=param,
                           hint="Write a shorter duration, e.g. 365d.")
    return seconds


def limits(body: LimitsIn | None) -> Limits | None:
    # Through the service's own checks, so the API and the CLI refuse the same values alike.
    return None if body is None else apply_limit_changes(Limits(), body.model_dump())
