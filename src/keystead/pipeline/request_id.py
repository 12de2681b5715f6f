"""Request ids: unique, not secret, and cheap.

A random per-process prefix and a counter make them without a system call per request
(os.urandom was 1-2 % of a request's CPU). A forked worker draws a new prefix, so it never
repeats its parent's ids.
"""

from __future__ import annotations

import itertools
import os
import re

__all__ = ["CLIENT_REQUEST_ID", "new_request_id"]

# What a client's own x-request-id may be to be kept (else a new one is made).
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

_ids = itertools.count(1)
_prefix = "req_" + os.urandom(6).hex()


def _new_prefix() -> None:
    global _prefix
    _prefix = "req_" + os.urandom(6).hex()


os.register_at_fork(after_in_child=_new_prefix)


def new_request_id() -> str:
    return f"{_prefix}{next(_ids) & 0xFFFFFFFFFFFF:012x}"
