"""Files that hold secrets or private records, created readable by their owner only.

A file is created with mode 0600 in the `open` call itself (never chmod-ed afterwards: between
the two calls another local user could open it). SQLite creates its database, `-wal` and `-shm`
files with the process umask, so the store opens it under `private_umask()`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ADMIN_TOKEN_PREFIX", "new_admin_token", "private_dir_in_env", "private_umask",
           "write_private"]

# keystead's admin token: its own prefix, so it is never mistaken for a short-lived token (kst_)
# and the scanner and guardrails can name it. Older installs wrote `kst_admin_`.
ADMIN_TOKEN_PREFIX = "ksa_"  # noqa: S105 (a prefix, not a secret)


def new_admin_token() -> str:
    import secrets

    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def write_private(path: Path, text: str, *, exclusive: bool = True) -> None:
    """Write `text` to a new file readable by its owner only (0600 from its first byte).

    `exclusive`: refuse to replace an existing file (FileExistsError); otherwise an existing
    file is truncated and its mode set to 0600 before anything is written.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    flags |= getattr(os, "O_NOFOLLOW", 0)  # never write through a planted symlink
    fd = os.open(path, flags, 0o600)
    try:
        if not exclusive:
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            handle.write(text)
    finally:
        if fd != -1:
            os.close(fd)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files created inside (by this process, e.g. SQLite's) get no group or other access."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@contextlib.contextmanager
def private_dir_in_env(variable: str, prefix: str) -> Iterator[Path]:
    """A fresh directory only this user can enter (mkdtemp: 0700), named in the environment
    variable `variable` for the worker processes about to start; on exit it is removed and the
    variable is restored."""
    previous = os.environ.get(variable)
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ[variable] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous
        shutil.rmtree(path, ignore_errors=True)
