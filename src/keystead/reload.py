"""Reload: re-read this replica's config file and swap in what it makes, or keep what runs.

Three ways in, one path: SIGHUP (server/signals.py), `POST /admin/reload` and `keystead
reload`. The file is read and validated completely first (config/load.py); a bad file changes
nothing and the error names the key and the fix. Then the runtime builds the new providers,
routes, prices, limits, ... and swaps them in one step (`Runtime.apply_config`); requests in
flight finish on the config they started with.

Settings read once at start-up (`RESTART_ONLY`: ports, database, Redis, vault, ...) keep their
running value; the result lists them under `restart_needed`. Every reload, whatever asked for
it, is recorded as a `config.reload` event naming the replica, so one can see what each replica
did (`keystead reload` prints them).

Environment variables from the `.env` beside the file are re-read too: a variable the `.env`
set (its value is still the `.env`'s) takes the new value; one the real environment set stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dotenv import dotenv_values
from pydantic import BaseModel

from keystead.config.load import ConfigError, LoadedConfig, load_config
from keystead.config.model import Config
from keystead.state.records import EventRecord
from keystead.state.versions import CONFIG_VERSION, reload_asked

if TYPE_CHECKING:
    from keystead.runtime import Runtime

__all__ = ["CONFIG_VERSION", "RELOAD_EVENT", "RESTART_ONLY", "ReloadResult", "Reloader",
           "ask_everyone", "changes", "file_digest", "keep_running"]

log = logging.getLogger("keystead.reload")

RELOAD_EVENT = "config.reload"

# Settings a running process cannot take over: section -> its fields (None: all of them).
RESTART_ONLY: dict[str, tuple[str, ...] | None] = {
    # (idle_timeout_s is uvicorn's keep-alive timeout, given to it at start)
    "server": ("host", "port", "workers", "shutdown_grace_s", "connect_timeout_s",
               "idle_timeout_s"),
    "database": None,  # the store is open
    "redis": None,  # the counters and the change notices are connected
    "vault": None,  # the master key opened the vault
    "admin": ("token",),  # the admin API checks the token it was built with
    "usage": None,  # the ledger writer runs with its batch size and queue
    "limits": ("lease_s",),  # the lease renewer runs on it
    "routing": ("cache_backend", "cache_max_mb"),  # the response cache is built
    "tracing": None,  # the tracer provider and its exporter are built at start
    # the workers' metric files (or none) and the label caps are set up at start
    "metrics": ("enabled", "max_label_values"),
}


def file_digest(path: Path | None) -> str:
    """What a config file holds, short: `sha256sum keystead.yaml | cut -c1-12` prints the same."""
    if path is None:
        return "defaults"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "unreadable"


def changes(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """(what a reload applies, what needs a restart): dotted names such as `routes.support`,
    `limits.environments`, `server.port`."""
    applied: list[str] = []
    restart: list[str] = []
    for section in type(old).model_fields:
        before, after = getattr(old, section), getattr(new, section)
        if before == after:
            continue
        kept = RESTART_ONLY.get(section, ())
        if isinstance(before, BaseModel):
            names = [f for f in type(before).model_fields
                     if getattr(before, f) != getattr(after, f)]
        elif isinstance(before, Mapping):
            names = sorted(str(k) for k in before.keys() | after.keys()
                           if before.get(k) != after.get(k))
        else:
            names = []
        if not names:
            (restart if kept is None else applied).append(section)
        for name in names:
            (restart if kept is None or name in kept else applied).append(f"{section}.{name}")
    return applied, restart


def keep_running(old: Config, new: Config) -> Config:
    """`new`, with the running value of every setting only a restart can change."""
    update: dict[str, Any] = {}
    for section, fields in RESTART_ONLY.items():
        running = getattr(old, section)
        if fields is None:
            update[section] = running
        else:
            update[section] = getattr(new, section).model_copy(
                update={f: getattr(running, f) for f in fields})
    return new.model_copy(update=update)


@dataclass(frozen=True)
class ReloadResult:
    replica: str  # host:pid
    trigger: str  # sighup, admin-api, notice, poll
    ok: bool
    digest: str  # of the file the replica runs on now
    changed: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    error: str | None = None  # why the file was refused (the running config is kept)

    def as_dict(self) -> dict[str, Any]:
        return {"replica": self.replica, "trigger": self.trigger, "ok": self.ok,
                "digest": self.digest, "changed": self.changed,
                "restart_needed": self.restart_needed, "error": self.error}


def _dotenv(config_path: Path | None) -> dict[str, str]:
    file = config_path.parent / ".env" if config_path is not None else None
    if file is None or not file.is_file():
        return {}
    return {name: value for name, value in dotenv_values(file).items() if value is not None}


async def ask_everyone(runtime: Runtime) -> str:
    """Make every gateway on the store re-read its own config file; says how it was asked."""
    return reload_asked(await runtime.announce(CONFIG_VERSION))


class Reloader:
    """Re-reads this process's config file into its runtime, one reload at a time."""

    def __init__(self, runtime: Runtime, replica: str | None = None):
        self.rt = runtime
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"
        self._dotenv = _dotenv(runtime.loaded.path)  # the .env as last read
        self._lock = asyncio.Lock()
        self.last: ReloadResult | None = None  # the latest reload's result (/readyz reads it)

    async def reload(self, trigger: str) -> ReloadResult:
        async with self._lock:
            result = await self._reload(trigger)
        self.last = result
        if not result.ok:
            log.error("config reload (%s) refused: %s", trigger, result.error)
        elif result.changed or result.restart_needed:
            log.info("config reloaded (%s): file %s; applied: %s%s", trigger, result.digest,
                      ", ".join(result.changed) or "nothing",
                      "; changed but kept until a restart: " + ", ".join(result.restart_needed)
                      if result.restart_needed else "")
        else:
            log.info("config re-read (%s): file %s, nothing changed", trigger, result.digest)
        try:
            await self.rt.store.insert_event(EventRecord(
                kind=RELOAD_EVENT, ts=time.time(),
                actor="admin-api" if trigger == "admin-api" else "gateway",
                detail=result.as_dict()))
        except Exception:  # the reload happened; only its record is missing
            log.exception("recording the config reload failed")
        return result

    async def everywhere(self, trigger: str) -> tuple[ReloadResult, str]:
        """Reload here; if that worked, every other replica re-reads its own file. Returns the
        result and what the others were told."""
        result = await self.reload(trigger)
        if not result.ok:
            return result, "not asked: this replica refused the file"
        try:
            return result, await ask_everyone(self.rt)
        except Exception as exc:
            log.exception("telling the other replicas to reload failed")
            return result, f"not asked: the store could not be reached ({type(exc).__name__})"

    async def _reload(self, trigger: str) -> ReloadResult:
        running = self.rt.live
        path = running.loaded.path
        if path is None:  # the embedded defaults: no file to re-read
            return ReloadResult(self.replica, trigger, True, running.digest)
        fresh = _dotenv(path)
        owned = self._owned(fresh)
        environ = {**os.environ, **{k: v for k, v in owned.items() if v is not None}}
        for name in [k for k, v in owned.items() if v is None]:
            environ.pop(name, None)
        digest = file_digest(path)
        try:
            loaded = load_config(path, environ=environ)
        except ConfigError as exc:
            return ReloadResult(self.replica, trigger, False, running.digest,
                                error=f"{exc} (the running config is kept; fix the file and "
                                      f"reload again)")
        applied, restart = changes(running.config, loaded.config)
        effective = LoadedConfig(keep_running(running.config, loaded.config), loaded.path,
                                 loaded.base_dir)
        # The `.env`'s new values before the providers are rebuilt: a provider added at run
        # time reads its `env:VAR` key from the process environment (as a fresh start would).
        before = {name: os.environ.get(name) for name in owned}
        _set_environ(owned)
        try:
            await self.rt.apply_config(effective, digest)
        except Exception as exc:
            _set_environ(before)
            log.exception("applying the reloaded config failed")
            # The exception's text stays in the log: the result is stored and answered.
            return ReloadResult(self.replica, trigger, False, running.digest,
                                error=f"applying it failed ({type(exc).__name__}, see this "
                                      f"gateway's log); the running config is kept")
        self._dotenv = fresh
        if "logging.level" in applied:
            logging.getLogger().setLevel(loaded.config.logging.level.upper())
        return ReloadResult(self.replica, trigger, True, digest, applied, restart)

    def _owned(self, fresh: dict[str, str]) -> dict[str, str | None]:
        """Variables the `.env` sets (new value) or no longer sets (None): those the process
        has from the `.env`, or not at all. A value the real environment set stays."""
        owned: dict[str, str | None] = {}
        for name, value in fresh.items():
            current = os.environ.get(name)
            if current is None or current == self._dotenv.get(name):
                owned[name] = value
        for name, value in self._dotenv.items():
            if name not in fresh and os.environ.get(name) == value:
                owned[name] = None
        return owned


def _set_environ(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
