"""Find, read, resolve and validate the configuration (P34).

Order: `--config FILE`, else `$KEYSTEAD_CONFIG`, else `./keystead.yaml`, else the embedded
defaults. A `.env` beside the file is loaded first (never overriding the real environment).
`${VAR}` and `${VAR:-default}` are resolved in every string. Secret fields must be references:
a raw secret written into the file is refused, because config files end up in repositories.

Importing this module is cheap: pydantic and the typed tree (about a third of a CLI command's
start-up) are imported by `parse_config` only, so `keystead --help` and `--server` calls that
read just the admin token (`read_admin_token`) never pay for them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

    from keystead.config.model import Config

__all__ = ["ConfigError", "LoadedConfig", "find_config_file", "load_config", "parse_config",
           "read_admin_token"]

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_FIELDS = {"api_key", "token", "master_key", "webhook_url", "secret", "password"}
# Mappings whose every value is a secret (a collector's API key among export headers).
_SECRET_MAPS = {("tracing", "headers")}
_PURE_REF = re.compile(r"^(\$\{[A-Za-z_][A-Za-z0-9_]*\}|env:[A-Za-z_][A-Za-z0-9_]*|vault:[\w.-]+)$")
# External secret stores, read by the gateway itself: only a provider's api_key may name one
# (elsewhere, e.g. admin.token, the text would be taken literally).
_STORE_REF = re.compile(r"^(file:\S+|aws-sm:[^\s#]+(#[^\s#]+)?|hcvault:[^\s#/]+/[^\s#]+#[^\s#]+)$")

# Environment variables that fill a setting the file leaves empty. A file that sets one itself
# wins; `init` writes `${KEYSTEAD_DATABASE_URL:-sqlite:///keystead.db}` so that it does not.
_ENV_OVERRIDES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("KEYSTEAD_DATABASE_URL", ("database", "url")),
    ("KEYSTEAD_REDIS_URL", ("redis", "url")),
    ("KEYSTEAD_MASTER_KEY", ("vault", "master_key")),
    ("KEYSTEAD_MASTER_KEY_FILE", ("vault", "master_key_file")),
    ("KEYSTEAD_ADMIN_TOKEN", ("admin", "token")),
)


class ConfigError(Exception):
    """A configuration that must not start. The message names the field and the fix."""


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path | None  # None: the embedded defaults
    base_dir: Path  # relative paths (SQLite file, master key file) resolve against this
    # What loading noticed and a person should hear (`serve` prints it), e.g. an environment
    # variable that is set but that the file overrules.
    notes: tuple[str, ...] = ()

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def store_url(self) -> str:
        """`database.url` with a relative SQLite path resolved against `base_dir`."""
        url = self.config.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////") \
                and url != "sqlite:///:memory:":
            url = "sqlite:///" + str(self.resolve_path(url[len("sqlite:///"):]))
        return url


def find_config_file(explicit: str | os.PathLike[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    from_env = (os.environ if environ is None else environ).get("KEYSTEAD_CONFIG")
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"KEYSTEAD_CONFIG points to {path}, which does not exist")
        return path
    default = Path("keystead.yaml")
    return default if default.is_file() else None


def load_config(explicit: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> LoadedConfig:
    path = find_config_file(explicit, environ)
    env = dict(os.environ if environ is None else environ)
    if path is None:
        return LoadedConfig(parse_config({}, env, source="embedded defaults"), None, Path.cwd())
    raw = _read_file(path, env, export=environ is None)
    return LoadedConfig(parse_config(raw, env, source=str(path)), path, path.parent.resolve(),
                        notes=_overruled(raw, env, str(path)))


def read_admin_token(explicit: str | os.PathLike[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> str | None:
    """`admin.token` as `load_config` would resolve it, without validating the rest of the file
    (`--server` needs nothing else from this machine). None when there is no file, no token, or
    the file or the token's reference cannot be read: the caller then asks for one."""
    env = dict(os.environ if environ is None else environ)
    try:
        path = find_config_file(explicit, environ)
        admin = _read_file(path, env, export=False).get("admin") if path is not None else None
        if isinstance(admin, dict) and admin.get("token"):
            _check_secret_references(admin, ("admin",), str(path))
            token = _resolve(admin["token"], ("admin", "token"), env, str(path))
            if isinstance(token, str) and token:
                return token
    except ConfigError:
        return None
    return env.get("KEYSTEAD_ADMIN_TOKEN") or None


def _read_file(path: Path, env: dict[str, str], *, export: bool) -> dict[str, Any]:
    """The file's top-level mapping; the `.env` beside it fills `env` (and, with `export`, the
    process environment) where a variable is not set already."""
    import yaml  # here: `keystead --help` reads no file

    dotenv = path.parent / ".env"
    if dotenv.is_file():
        from dotenv import dotenv_values

        try:
            values = dotenv_values(dotenv)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{dotenv}: cannot be read: {_reason(exc)}") from None
        for name, value in values.items():
            if value is not None:
                env.setdefault(name, value)
                if export:
                    os.environ.setdefault(name, value)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, not UTF-8
        raise ConfigError(f"{path}: cannot be read: {_reason(exc)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (server, ...)")
    return raw


def _yaml_problem(exc: Any) -> str:
    """What is wrong and where (line, column), never the text there: it may hold a secret."""
    parts = []
    for what, mark in ((getattr(exc, "context", None), getattr(exc, "context_mark", None)),
                       (getattr(exc, "problem", None), getattr(exc, "problem_mark", None))):
        if what:
            parts.append(f"{what} at line {mark.line + 1}, column {mark.column + 1}"
                         if mark is not None else str(what))
    return ": ".join(parts) or type(exc).__name__


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def parse_config(raw: dict[str, Any], env: Mapping[str, str], *, source: str) -> Config:
    from pydantic import ValidationError

    from keystead.config.model import Config

    _check_secret_references(raw, (), source)
    resolved = _resolve(raw, (), env, source)
    for var, (section, field) in _ENV_OVERRIDES:
        if env.get(var) and not (resolved.get(section) or {}).get(field):
            resolved.setdefault(section, {})
            if isinstance(resolved[section], dict):
                resolved[section][field] = env[var]
    try:
        return Config.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _overruled(raw: dict[str, Any], env: Mapping[str, str], source: str) -> tuple[str, ...]:
    """The override variables that are set but that the file's own value keeps from working."""
    notes = []
    for var, (section, field) in _ENV_OVERRIDES:
        values = raw.get(section)
        written = values.get(field) if isinstance(values, dict) else None
        if env.get(var) and isinstance(written, str) and written \
                and not re.search(r"\$\{" + var + r"(:-[^}]*)?\}|^env:" + var + "$", written):
            notes.append(f"{var} is set but {source} sets {section}.{field} itself, and the "
                         f"file wins: write `{field}: ${{{var}}}` there (or "
                         f"`${{{var}:-default}}`) to take it from the environment")
    return tuple(notes)


def _resolve(node: Any, path: tuple[str, ...], env: Mapping[str, str], source: str) -> Any:
    if isinstance(node, dict):
        return {key: _resolve(value, (*path, str(key)), env, source) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, (*path, str(i)), env, source) for i, value in enumerate(node)]
    if isinstance(node, str):
        if node.startswith("env:") and path and _is_secret(path):
            node = "${" + node[4:] + "}"

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{source}: {'.'.join(path)}: environment variable {name} is not "
                              f"set ({_unset_hint(name, path)})")

        return _REF.sub(substitute, node)
    return node


def _unset_hint(name: str, path: tuple[str, ...]) -> str:
    if not (path and _is_secret(path)):
        return f"set it, put it in the .env beside the config, or write ${{{name}:-default}}"
    # A secret has no default: one written into the file would end up in a repository.
    hint = "set it, or put it in the .env beside the config, never in the config itself"
    if path[-1] == "master_key":
        hint += "; for a new install, `keystead init DIR` writes one into its .env"
    return hint


def _is_secret(path: tuple[str, ...]) -> bool:
    return path[-1] in _SECRET_FIELDS or path[-2:-1] == ("api_keys",) \
        or path[:-1] in _SECRET_MAPS


def _check_secret_references(node: Any, path: tuple[str, ...], source: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if (*path, key) in _SECRET_MAPS and isinstance(value, dict):
                for name, entry in value.items():
                    _refuse_raw_secret(entry, (*path, key, str(name)), source,
                                       provider_key=False)
                continue
            provider_key = key in ("api_key", "api_keys") and path[:1] == ("providers",)
            if key == "api_keys" and provider_key and isinstance(value, list):
                # A pool of provider keys: each entry follows api_key's rule.
                for i, entry in enumerate(value):
                    _refuse_raw_secret(entry, (*path, key, str(i)), source, provider_key=True)
                continue
            if key in _SECRET_FIELDS:
                _refuse_raw_secret(value, (*path, key), source, provider_key=provider_key)
            _check_secret_references(value, (*path, str(key)), source)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_secret_references(value, (*path, str(i)), source)


def _refuse_raw_secret(value: Any, path: tuple[str, ...], source: str, *,
                       provider_key: bool) -> None:
    if provider_key and isinstance(value, str):
        _refuse_own_secret(value, path, source)
    if not isinstance(value, str) or _PURE_REF.match(value) \
            or (provider_key and _STORE_REF.match(value)):
        return
    raise ConfigError(
        f"{source}: {'.'.join(path)}: holds a raw secret; a config file must "
        f"only reference one: write ${{VAR}} and keep the value in the environment or "
        f"the .env file, or store it with `keystead providers add --api-key-stdin`"
        + (" (or reference a secret store: file:PATH, aws-sm:SECRET_ID[#FIELD], "
           "hcvault:MOUNT/PATH#FIELD)" if provider_key else "")
    )


def _refuse_own_secret(value: str, path: tuple[str, ...], source: str) -> None:
    """keystead's own secrets (KEYSTEAD_* variables, a .env) are never a provider key."""
    from keystead.providers.ref_policy import own_secret

    match = _REF.fullmatch(value)
    why = own_secret(f"env:{match.group(1)}" if match else value)
    if why is not None:
        raise ConfigError(f"{source}: {'.'.join(path)}: {why}; reference the provider's own "
                          "key (e.g. ${OPENAI_API_KEY})")


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting (misspelt? see docs/configuration.md for the valid keys)"
        elif error["type"] == "literal_error":
            message = f"{message}"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
