"""The ASGI application: thin glue that hands each request to the data plane or the admin API.

Built by one factory (`create_app`); the runtime opens in the lifespan startup and closes in the
lifespan shutdown, after the server stopped accepting and finished in-flight requests, so the
usage ledger is flushed last. A config reload swaps the runtime's `Live`; the next request gets
a data plane built on it, while requests in flight finish on the one they started on.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson

from keystead.alerts.engine import AlertEngine, open_breakers
from keystead.checks.readiness import Readiness
from keystead.checks.schedule import CheckSchedule
from keystead.config.load import LoadedConfig, load_config
from keystead.errors import RouteNotFound, Unavailable, render
from keystead.runtime import Runtime
from keystead.server.dataplane import DataPlane
from keystead.server.protocol import SlowClientLimits
from keystead.server.signals import HangupReload
from keystead.vault.envelope import MasterKey

__all__ = ["KeysteadApp", "app_from_env", "create_app"]

log = logging.getLogger("keystead.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_JSON = (b"content-type", b"application/json")
_NOT_SERVING = Unavailable("keystead is starting or shutting down.", hint="Retry in a moment.")


class KeysteadApp:
    def __init__(self, loaded: LoadedConfig, master: MasterKey | None = None,
                 on_ready: Callable[[Runtime], Awaitable[None]] | None = None,
                 hangup: HangupReload | None = None):
        self.loaded = loaded
        self._master = master
        self._on_ready = on_ready
        self._hangup = hangup  # SIGHUP reloads the config (`keystead serve` only)
        self.runtime: Runtime | None = None
        self._data: DataPlane | None = None
        self._admin: Any = None
        self._reminders: asyncio.Task[None] | None = None
        self._checks: CheckSchedule | None = None
        self._readiness: Readiness | None = None
        self.alerts: AlertEngine | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith("/v1/"):
                data = self._data
                if data is None:
                    await _plain(send, _NOT_SERVING)
                    return
                if data.live is not data.rt.live:  # the config was reloaded
                    data = self._data = DataPlane(data.rt)
                await data(scope, receive, send)
                return
            if path.startswith("/admin"):
                admin = self.admin_app()
                if admin is None:
                    await _plain(send, _NOT_SERVING)
                else:
                    await admin(scope, receive, send)
                return
            if path == "/metrics":
                runtime = self.runtime
                if runtime is None:
                    await _plain(send, _NOT_SERVING)
                    return
                from keystead.metrics.endpoint import serve_metrics

                await serve_metrics(runtime, scope, send)
                return
            if path in ("/healthz", "/readyz"):
                await self._health(path, send)
                return
            await _plain(send, RouteNotFound(
                f"Unknown route {path}.", hint="The OpenAI-compatible API lives under /v1/."))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _health(self, path: str, send: Send) -> None:
        """/healthz: alive (200 while the process serves); /readyz: able to serve, or which
        dependency is down (checks/readiness.py)."""
        readiness = self._readiness
        if readiness is None or self._data is None:
            status = 200 if path == "/healthz" else 503
            body = orjson.dumps({"status": "starting"})
        elif path == "/healthz":
            status, body = 200, orjson.dumps({"status": "ok"})
        else:
            status, body = await readiness.answer()
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON, (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})

    @property
    def slow_client_limits(self) -> SlowClientLimits:
        """The deadlines the HTTP protocol gives each new connection (server/protocol.py)."""
        runtime = self.runtime
        config = runtime.live.config if runtime is not None else self.loaded.config
        return SlowClientLimits(config.server.header_timeout_s, config.server.body_timeout_s)

    def admin_app(self) -> Any:
        """The admin API's ASGI app, built on first use (None before startup).

        FastAPI is a fifth of the start-up time, and a gateway only ever called on /v1 never
        needs it.
        """
        if self._admin is None and self.runtime is not None:
            from keystead.server.admin import create_admin_app

            self._admin = create_admin_app(self.runtime)
        return self._admin

    async def startup(self) -> Runtime:
        runtime = await Runtime.open(self.loaded, serving=True, master=self._master)
        self.runtime = runtime
        self._data = DataPlane(runtime)
        if self._on_ready is not None:
            await self._on_ready(runtime)
        # Always: a reload may set keys.rotate_every (with none set it records nothing).
        self._reminders = asyncio.get_running_loop().create_task(self._remind(runtime))
        # Always, like the reminders: a reload may set checks.every.
        self._checks = CheckSchedule(runtime)
        self._checks.start()
        self._readiness = Readiness(runtime)
        # Always too: it looks at alerts.enabled each round, so a reload can turn it on.
        self.alerts = AlertEngine(runtime, breakers=partial(open_breakers, runtime))
        self.alerts.start()
        if self._hangup is not None:
            self._hangup.attach(lambda: runtime.reloader.reload("sighup"))
        # Everything built so far lives as long as the process: move it out of the collector's
        # sight so that full collections on the request path stay short.
        gc.collect()
        gc.freeze()
        return runtime

    async def _remind(self, runtime: Runtime, every_s: float = 3600.0) -> None:
        """Record rotation reminders now and every hour (a reminder is recorded once)."""
        from keystead.control.events import EventService

        while True:
            try:
                if runtime.config.keys.rotate_every:
                    await EventService(runtime).remind()
            except Exception:
                log.exception("recording rotation reminders failed; retrying in an hour")
            await asyncio.sleep(every_s)

    async def shutdown(self) -> None:
        if self._hangup is not None:
            await self._hangup.detach()
        if self.alerts is not None:
            await self.alerts.stop()
            self.alerts = None
        if self._reminders is not None:
            self._reminders.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reminders
            self._reminders = None
        if self._checks is not None:
            await self._checks.stop()
            self._checks = None
        if self._readiness is not None:
            await self._readiness.close()
            self._readiness = None
        self._data = None
        if self.runtime is not None:
            await self.runtime.close()
            log.info("shutdown complete: usage ledger flushed (%d records written)",
                     self.runtime.ledger.written)
            self.runtime = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.error("startup failed: %s", getattr(exc, "message", None) or exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


async def _plain(send: Send, error: Any) -> None:
    await send({"type": "http.response.start", "status": error.status, "headers": [_JSON]})
    await send({"type": "http.response.body", "body": render(error)})


def create_app(loaded: LoadedConfig, master: MasterKey | None = None,
               on_ready: Callable[[Runtime], Awaitable[None]] | None = None,
               hangup: HangupReload | None = None) -> KeysteadApp:
    return KeysteadApp(loaded, master, on_ready, hangup)


def app_from_env() -> KeysteadApp:
    """Factory for uvicorn worker processes: the parent passes the config path by environment.
    Each worker answers SIGHUP with a reload (the parent passes SIGHUP on: server/workers.py)."""
    from keystead.logs import configure_logging

    hangup = HangupReload()
    hangup.catch_early()
    loaded = load_config(os.environ.get("KEYSTEAD_CONFIG") or None)
    configure_logging(loaded.config.logging.level)
    return create_app(loaded, hangup=hangup)
