"""Which secret references may name a provider key: references only where they belong.

A provider key reference (`env:VAR`, `file:PATH`, `aws-sm:...`, `hcvault:...`) makes the gateway
read a secret and send it, as a provider key, to the provider's `base_url`. Whoever may create
one chooses both, so:

1. **keystead's own secrets are never a provider key**, whatever the face (config file, CLI,
   admin API) and whatever is allowed: the `KEYSTEAD_*` variables (the master key, the admin
   token, ...), a `.env` file, the master key file, the config file and the vault's own
   `system:` records (the key pepper) (`own_secret`). When a
   key is read, a value that is the vault's master key or the value of a `KEYSTEAD_*` variable
   is refused too, whatever the reference was (`secret_refs.resolve_reference`).
2. **The admin API** (and `keystead --server`, which calls it) may create only the references
   `admin.secret_refs` allows (`admin_refusal`); by default none: it is given the key's value,
   which is sealed into the vault. The CLI run beside the config (embedded) is the operator's
   own: rule 1 only.

Cheap to import (the stdlib and the config model): the config loader uses `own_variable`.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path

from keystead.config.model import AdminSecretRefs

__all__ = ["OWN_PREFIX", "admin_refusal", "own_secret", "own_variable"]

OWN_PREFIX = "KEYSTEAD_"
_OWN_VAULT = "system:"  # the vault's own records (vault.store.PEPPER_ID), not provider keys


def own_variable(name: str) -> bool:
    """A variable of keystead's own (the master key, the admin token, the database URL...)."""
    return name.upper().startswith(OWN_PREFIX)


def own_secret(ref: str, protected: Iterable[Path] = ()) -> str | None:
    """Why `ref` names one of keystead's own secrets (a sentence), or None. `protected`: the
    files of this gateway that hold secrets (master key file, config file, its .env)."""
    scheme, _, rest = ref.partition(":")
    if scheme == "env" and own_variable(rest):
        return f"{rest} is one of keystead's own variables, never a provider key"
    if scheme == "vault" and rest.startswith(_OWN_VAULT):
        return f"{rest} is keystead's own secret in its vault (the key pepper), never a " \
               "provider key"
    if scheme == "file":
        path = Path(rest).expanduser()
        if path.name == ".env":
            return f"{path} is an environment file (keystead's own .env), not a provider key"
        real = _real(path)
        for own in (*protected, *_own_files_from_env()):
            if real == _real(own):
                return f"{path} is one of keystead's own files, never a provider key"
    return None


def admin_refusal(ref: str, policy: AdminSecretRefs) -> str | None:
    """The `admin.secret_refs` setting that would have to allow `ref` for the admin API to
    create it, or None when it is allowed. `vault:` references are the service's own."""
    scheme, _, rest = ref.partition(":")
    if scheme == "env":
        allowed = any(fnmatch.fnmatchcase(rest, pattern) for pattern in policy.allow_env)
        return None if allowed else "admin.secret_refs.allow_env"
    if scheme == "file":
        real = _real(Path(rest).expanduser())
        allowed = any(real.is_relative_to(_real(Path(directory)))
                      for directory in policy.allow_file_dirs)
        return None if allowed else "admin.secret_refs.allow_file_dirs"
    if scheme == "aws-sm":
        secret_id = rest.partition("#")[0]
        allowed = any(fnmatch.fnmatchcase(secret_id, pattern) for pattern in policy.allow_aws_sm)
        return None if allowed else "admin.secret_refs.allow_aws_sm"
    if scheme == "hcvault":
        path = rest.partition("#")[0]
        allowed = any(fnmatch.fnmatchcase(path, pattern) for pattern in policy.allow_hcvault)
        return None if allowed else "admin.secret_refs.allow_hcvault"
    return None if scheme == "vault" else "admin.secret_refs"


def _real(path: Path) -> Path:
    """The file a path names, links and `..` resolved (relative: against the working
    directory, as `file:` references are read)."""
    return Path(os.path.realpath(path))


def _own_files_from_env() -> tuple[Path, ...]:
    master = os.environ.get("KEYSTEAD_MASTER_KEY_FILE")
    config = os.environ.get("KEYSTEAD_CONFIG")
    return tuple(Path(p).expanduser() for p in (master, config) if p)
