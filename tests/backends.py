"""The two state backends every behaviour test of limits runs on.

`embedded`: SQLite + in-process counters (the default). `scaleout`: a fresh PostgreSQL database
+ Redis under a prefix of its own, both real servers on loopback, cleaned up afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pg
from redis_support import REDIS_URL, delete_prefix, require_redis

__all__ = ["BACKENDS", "backend_config", "delete_prefix_now"]

BACKENDS = ["embedded", "scaleout"]


def delete_prefix_now(prefix: str) -> None:
    asyncio.run(delete_prefix(prefix))


@contextmanager
def backend_config(kind: str) -> Iterator[dict[str, Any]]:
    """Config sections (for support.make_loaded's `raw`) that select the backend."""
    if kind == "embedded":
        yield {}
        return
    pg.require_pg()
    require_redis()
    prefix = f"kst:{secrets.token_hex(4)}:"
    with pg.fresh_database("keystead_b") as url:
        try:
            yield {"database": {"url": url}, "redis": {"url": REDIS_URL, "prefix": prefix}}
        finally:
            delete_prefix_now(prefix)
