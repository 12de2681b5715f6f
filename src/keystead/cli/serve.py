"""`keystead serve`: the gateway on uvicorn (uvloop, httptools), one process or several."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING

import click

from keystead.cli.context import State, friendly
from keystead.logs import configure_logging
from keystead.vault.store import load_master_key

if TYPE_CHECKING:
    from keystead.server.signals import HangupReload

__all__ = ["COMMANDS", "catch_sighup", "migrate_store", "run_until_stopped", "run_workers",
           "uvicorn_config"]


def uvicorn_options(grace: int, idle_timeout_s: float) -> dict[str, object]:
    """How keystead runs uvicorn, in one process or several."""
    return {
        "loop": "uvloop" if sys.platform != "win32" else "asyncio",
        # httptools with deadlines for slow clients (headers, body; server/protocol.py).
        "http": "keystead.server.protocol:GuardedHttpToolsProtocol",
        "ws": "none",  # keystead serves no WebSocket: an Upgrade is plain HTTP, not a 500
        "lifespan": "on", "log_config": None, "access_log": False, "server_header": False,
        "timeout_graceful_shutdown": grace, "timeout_keep_alive": idle_timeout_s,
        # uvicorn rewrites the client address from X-Forwarded-For for requests from
        # 127.0.0.1 by default, before keystead sees them: that walked around IP allowlists
        # from loopback. keystead reads forwarded headers itself, only from
        # `server.trusted_proxies` (pipeline/client_ip.py).
        "proxy_headers": False,
    }


def uvicorn_config(app: object, host: str, port: int, grace: int,
                   idle_timeout_s: float = 5.0, **extra: object) -> object:
    import uvicorn

    return uvicorn.Config(app, host=host, port=port,  # type: ignore[arg-type]
                          **uvicorn_options(grace, idle_timeout_s), **extra)  # type: ignore[arg-type]


def run_until_stopped(server: object) -> None:
    """Run uvicorn; a SIGTERM or Ctrl-C after the graceful shutdown is a clean exit (0).

    uvicorn drains, then re-raises the signal it caught; the handlers below turn that into a
    normal exit instead of a death by signal or click's "Aborted!".
    """

    def stopped(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stopped)
    try:
        server.run()  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:  # type: ignore[attr-defined]
        sys.exit(3)


@click.command("serve")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (same as keystead --config).")
@click.option("--host", help="Interface to listen on (default: server.host, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: server.port, 8080).")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes (default 1).")
@click.pass_obj
@friendly
def serve(state: State, config_path: str | None, host: str | None, port: int | None,
          workers: int | None) -> None:
    """Run the gateway."""
    hangup = catch_sighup()
    if config_path is not None:
        state.config_path = config_path
    loaded = state.loaded()
    config = loaded.config
    configure_logging(config.logging.level)
    key_file = config.vault.master_key_file
    # Fail here, before the server starts, with the message that says what to set.
    load_master_key(config.vault.master_key.get_secret_value() if config.vault.master_key
                    else None, loaded.resolve_path(key_file) if key_file else None)
    host = host or config.server.host
    port = config.server.port if port is None else port
    workers = workers or config.server.workers
    grace = round(config.server.shutdown_grace_s)
    if workers > 1:
        if loaded.path is not None:
            os.environ["KEYSTEAD_CONFIG"] = str(loaded.path.resolve())
        migrate_store(loaded.store_url())
        from keystead.checks.worker_lease import workers_lock
        from keystead.metrics.multiproc import multiprocess_dir

        with multiprocess_dir() if config.metrics.enabled else contextlib.nullcontext(), \
                workers_lock():
            run_workers(uvicorn_config("keystead.server.app:app_from_env", host, port, grace,
                                       config.server.idle_timeout_s, factory=True,
                                       workers=workers))
        return
    from keystead.metrics.multiproc import single_process

    single_process()  # metrics in memory, whatever the environment says
    import uvicorn

    from keystead.cli.summary import on_ready
    from keystead.server.app import create_app

    # on_ready prints the start-up summary
    app = create_app(loaded, on_ready=on_ready(host, port), hangup=hangup)
    run_until_stopped(uvicorn.Server(uvicorn_config(  # type: ignore[arg-type]
        app, host, port, grace, config.server.idle_timeout_s)))


def catch_sighup() -> HangupReload:
    """From here on SIGHUP reloads the config instead of killing the process (a closed
    terminal sends one): remembered during start-up, answered once the gateway runs."""
    from keystead.server.signals import HangupReload

    hangup = HangupReload()
    hangup.catch_early()
    return hangup


def migrate_store(url: str) -> None:
    """Bring the store's schema up to date before workers start: they all open the store at
    once, and SQLite has no lock for its migrations (two workers raced "table keys already
    exists", and one failing start-up stopped them all). PostgreSQL's migrations take an
    advisory lock; this costs it one connection."""
    import asyncio

    from keystead.state.sql_store import SQLStore

    async def migrate() -> None:
        store = SQLStore(url)
        await store.open()
        await store.close()

    asyncio.run(migrate())


def run_workers(config: object) -> None:
    """N worker processes on one port; SIGHUP to this process reloads every worker."""
    from keystead.server.workers import run_workers as supervise

    supervise(config)  # type: ignore[arg-type]


COMMANDS = [serve]
