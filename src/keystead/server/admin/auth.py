"""The admin token check: `Authorization: Bearer <KEYSTEAD_ADMIN_TOKEN>`, compared in constant
time. A header of any bytes (non-ASCII, megabytes) is a 401, never a 500."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header

from keystead.errors import AuthError, PermissionDenied
from keystead.pipeline.identify import bearer_token
from keystead.runtime import Runtime

__all__ = ["admin_guard"]

# Far past any token keystead writes (47 characters); a longer header is not compared at all.
_MAX_HEADER = 1024


def admin_guard(runtime: Runtime) -> Callable[..., Awaitable[None]]:
    """The dependency every admin router is included with."""
    token = runtime.config.admin.token
    expected = token.get_secret_value().encode() if token is not None else None

    async def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if expected is None:
            raise PermissionDenied("The admin API is disabled: no admin token is configured.",
                                   hint="Set KEYSTEAD_ADMIN_TOKEN (keystead init writes one).")
        presented = (bearer_token(authorization)
                     if authorization and len(authorization) <= _MAX_HEADER else None)
        # Headers arrive as latin-1 text: encoded back to those bytes, any header compares.
        if not presented or not hmac.compare_digest(presented.encode("latin-1"), expected):
            raise AuthError("Missing or wrong admin token.",
                            hint="Send Authorization: Bearer <KEYSTEAD_ADMIN_TOKEN>.")

    return require_admin
