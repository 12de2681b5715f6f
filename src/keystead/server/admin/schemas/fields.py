"""The admin API's value types: every integer has a range and every string a length and a
character set, where the value enters (issue 13). The service layer checks meaning (a known
team, a valid CIDR); these keep out what no service should ever see: integers past what the
store, Redis or orjson hold, control characters (PostgreSQL refuses NUL in text), megabytes of
text.

The patterns are written so that Python's `re`, the JSON Schema validators and pydantic's own
engine read them alike (no `\\p{...}` classes), so /admin/openapi.json states the same rules.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, StringConstraints

from keystead.control.bounds import BUDGET_MAX, BUDGET_PLACES, COUNT_MAX, INT32_MAX

__all__ = ["BUDGET_MAX", "COUNT_MAX", "INT32_MAX", "Budget", "Count", "Duration", "Line",
           "LongLine", "MaxBodyBytes", "MaxTokens", "Name", "Text"]


_LINE = r"^[^\x00-\x1f\x7f]*$"  # one line: no control character
_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # tabs and line breaks allowed

Name = Annotated[str, StringConstraints(max_length=128, pattern=_LINE)]
"""A key, team, provider or model name, a label, an id: one line, at most 128 characters."""
Line = Annotated[str, StringConstraints(max_length=256, pattern=_LINE)]
"""A short one-line value: an owner, a CIDR, an environment, a filter."""
LongLine = Annotated[str, StringConstraints(max_length=4096, pattern=_LINE)]
"""A URL, a secret reference or a provider key."""
Text = Annotated[str, StringConstraints(max_length=2000, pattern=_TEXT)]
"""Free text an operator types: a description, a reason."""
Duration = Annotated[str, StringConstraints(max_length=32)]
"""A duration as people write it (90s, 15m, 12h, 30d, 2w); parsed, with its own message, by
params.duration."""

Count = Annotated[int, Field(ge=1, le=COUNT_MAX)]
MaxTokens = Annotated[int, Field(ge=1, le=INT32_MAX)]
MaxBodyBytes = Annotated[int, Field(ge=1024, le=INT32_MAX)]
Budget = Annotated[Decimal, Field(ge=0, le=BUDGET_MAX, decimal_places=BUDGET_PLACES,
                                  allow_inf_nan=False)]

