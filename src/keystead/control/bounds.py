"""The largest values the services accept, wherever they come from (the CLI, the admin API,
a backend minting a token): past them a value would overflow a column, a Redis counter or
orjson, and fail as a 500 or a traceback instead of an answer naming the field."""

from __future__ import annotations

from decimal import Decimal

__all__ = ["BUDGET_MAX", "BUDGET_PLACES", "COUNT_MAX", "INT32_MAX"]

INT32_MAX = 2**31 - 1  # max_tokens and max_body_bytes are INTEGER columns
COUNT_MAX = 10**12  # rate limits: far past any real limit, far below Redis' 2**63 counters
BUDGET_MAX = Decimal(10**12)  # USD
BUDGET_PLACES = 9  # spend is counted in nano-USD
