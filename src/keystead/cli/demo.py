"""`keystead demo`: the gateway on embedded defaults with built-in mock providers.

The port is bound first (a busy one is one line naming --port, before anything is written),
the text with the key is printed once the gateway answers on it, and every file the demo
writes is its owner's only: the secrets through `write_private`, the SQLite database and its
journals under `private_umask` (SQLite creates them with the process umask).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from keystead.cli.context import friendly
from keystead.config.load import LoadedConfig, parse_config
from keystead.logs import configure_logging
from keystead.private_files import new_admin_token, private_umask, write_private
from keystead.vault.envelope import MasterKey
from keystead.vault.store import load_master_key

__all__ = ["COMMANDS"]


def _demo_raw() -> dict[str, Any]:
    from keystead.cli.demo_runtime import DATABASE

    return {
        "database": {"url": f"sqlite:///{DATABASE}"},
        "providers": {
            "mock": {"type": "mock", "models": ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"],
                     "mock": {"chunk_delay_ms": 20}},
            # A second deployment that fails a third of its calls: the route below retries
            # them on the healthy one (watch x-keystead-attempts).
            "mock-flaky": {"type": "mock", "models": ["flaky-gpt-4o-mini"],
                           "mock": {"chunk_delay_ms": 20, "failure_rate": 0.33,
                                    "failure_status": 503, "seed": 7}},
            # Anthropic's wire format in process: /v1/messages for code on Anthropic's SDK.
            "mock-anthropic": {"type": "mock", "models": ["claude-haiku-4-5", "claude-sonnet-4-6"],
                               "mock": {"flavor": "anthropic", "chunk_delay_ms": 20}}},
        "routes": {"support-default": {
            "description": "the demo's route: two deployments, a fallback, a cache",
            "deployments": [{"provider": "mock-flaky", "model": "gpt-4o-mini"},
                            {"provider": "mock", "model": "gpt-4o-mini"}],
            "fallbacks": ["gpt-4o"],
            "cache": {"ttl": "10m"},
            "degraded": {"static_reply": "The assistant is busy; please try again soon."}}},
        "logging": {"level": "info"},
    }


def _secret(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`, made and written (0600 from its creation) when it is missing."""
    if not path.exists():
        write_private(path, make() + "\n")
    return path.read_text(encoding="ascii").strip()


def _demo_loaded(directory: Path) -> tuple[LoadedConfig, MasterKey, str]:
    from pydantic import SecretStr

    _secret(directory / "master.key", MasterKey.generate_text)
    token = _secret(directory / "admin.token", new_admin_token)
    config = parse_config(_demo_raw(), {}, source="demo defaults")
    config = config.model_copy(update={"admin": config.admin.model_copy(
        update={"token": SecretStr(token)})})
    master = load_master_key(None, directory / "master.key")
    return LoadedConfig(config, None, directory), master, token


def _url(host: str, port: int) -> str:
    """The URL to print: one that reaches the demo from this machine (a wildcard address is
    no place to send a request to)."""
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(  # noqa: S104
        host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"


@click.command("demo")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: Path(os.environ.get("KEYSTEAD_DEMO_DIR",
                                                  Path.home() / ".keystead" / "demo")),
              help="Where the demo keeps its database and keys [default: ~/.keystead/demo].")
@click.option("--fresh/--keep", default=True, show_default=True,
              help="Start from a new database, key and admin token, or keep the last run's "
                   "(its usage rows included).")
@friendly
def demo(port: int, host: str, directory: Path, fresh: bool) -> None:
    """Run the gateway with built-in mock providers: no account, no network."""
    from keystead.cli.demo_runtime import (
        DemoServer,
        announce,
        ensure_demo_key,
        lock_directory,
        prepare_directory,
    )
    from keystead.cli.listen import listen
    from keystead.cli.serve import run_until_stopped, uvicorn_config
    from keystead.server.app import create_app

    configure_logging("warning")
    sock = listen(host, port)
    base_url = _url(host, sock.getsockname()[1])
    with sock, private_umask():
        try:
            lock_directory(directory)  # held until the process ends
            data = prepare_directory(directory, fresh)
            loaded, master, token = _demo_loaded(directory)
        except OSError as exc:
            raise click.ClickException(f"cannot keep the demo's data in {directory}: "
                                       f"{exc.strerror or exc}; pick another with --dir") from None
        keys: list[str] = []

        async def on_ready(runtime: object) -> None:
            keys.append(await ensure_demo_key(runtime, directory))  # type: ignore[arg-type]

        app = create_app(loaded, master=master, on_ready=on_ready)
        config = uvicorn_config(app, host, sock.getsockname()[1], 5)
        run_until_stopped(DemoServer(config, sock, lambda: announce(  # type: ignore[arg-type]
            keys[0], base_url, token, directory, data)))


COMMANDS = [demo]
