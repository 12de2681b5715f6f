"""The `.env` beside the config (the one `keystead init` writes): which of its variables holds
the master key, and rewriting that one line without touching the others.

A new `.env` is written beside the old one as a new file, 0600 from its first byte
(private_files.write_private), and moved over it with os.replace: a reader sees the old file or
the new one, never half of either, and a failure leaves the old one as it was.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from keystead.config.load import ConfigError
from keystead.private_files import write_private

__all__ = ["DEFAULT_VARIABLE", "master_key_variable", "replace_variable", "stage"]

DEFAULT_VARIABLE = "KEYSTEAD_MASTER_KEY"
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|env:([A-Za-z_][A-Za-z0-9_]*)")


def master_key_variable(config_file: Path) -> str:
    """The variable `vault.master_key` references in `config_file` (KEYSTEAD_MASTER_KEY when
    the file leaves it to the environment)."""
    import yaml

    try:
        raw = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{config_file}: cannot be read: {exc}") from None
    vault = raw.get("vault") if isinstance(raw, dict) else None
    reference = vault.get("master_key") if isinstance(vault, dict) else None
    if reference is None:
        return DEFAULT_VARIABLE
    match = _REFERENCE.fullmatch(str(reference))
    if match is None:
        raise ConfigError(f"{config_file}: vault.master_key is {reference!r}, not a variable "
                          "of the .env (${VAR}): --write-env cannot tell which line to change")
    return match.group(1) or match.group(2)


def replace_variable(text: str, name: str, value: str) -> str:
    """`text` (a .env file) with every `name=...` line set to `value`; if there is none, the
    line is appended. Every other line, comment and line ending stays as it was."""
    line_of = re.compile(rf"^(\s*(?:export\s+)?{re.escape(name)}\s*=)[^\r\n]*(\r?\n)?\Z")
    lines = text.splitlines(keepends=True)
    found = False
    for i, line in enumerate(lines):
        match = line_of.match(line)
        if match is not None:
            lines[i] = f"{match.group(1)}{value}{match.group(2) or ''}"
            found = True
    if not found:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"{name}={value}\n")
    return "".join(lines)


def stage(env_file: Path, name: str, value: str) -> Path:
    """A new file beside `env_file` holding its text with `name` set to `value` (0600). Move it
    into place with os.replace(staged, env_file); delete it to give up."""
    try:
        text = env_file.read_bytes().decode("utf-8")  # bytes: line endings stay as they are
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{env_file}: cannot be read: {exc}") from None
    staged = env_file.with_name(f".{env_file.name}.{secrets.token_hex(6)}.new")
    try:
        write_private(staged, replace_variable(text, name, value))
    except OSError as exc:
        raise ConfigError(f"cannot write beside {env_file}: {exc.strerror or exc}") from None
    return staged
