"""`keystead serve`, `keystead demo` and `keystead mock-upstream`."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path

import click

from keystead.cli.main import State, friendly
from keystead.config.load import LoadedConfig, parse_config
from keystead.logs import configure_logging
from keystead.vault.envelope import MasterKey
from keystead.vault.store import load_master_key


def _uvicorn_config(app: object, host: str, port: int, grace: int, **extra: object) -> object:
    import uvicorn

    loop = "uvloop" if sys.platform != "win32" else "asyncio"
    return uvicorn.Config(app, host=host, port=port, loop=loop, http="httptools",  # type: ignore[arg-type]
                          lifespan="on", log_config=None, access_log=False,
                          timeout_graceful_shutdown=grace, server_header=False, **extra)  # type: ignore[arg-type]


def _run_until_stopped(server: object) -> None:
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
    import uvicorn

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
        uvicorn.run("keystead.server.app:app_from_env", factory=True, host=host, port=port,
                    workers=workers, loop="uvloop", http="httptools", lifespan="on",
                    log_config=None, access_log=False, timeout_graceful_shutdown=grace,
                    server_header=False)
        return
    from keystead.server.app import create_app

    _run_until_stopped(uvicorn.Server(_uvicorn_config(create_app(loaded), host, port, grace)))  # type: ignore[arg-type]


def _demo_loaded(directory: Path) -> tuple[LoadedConfig, MasterKey, str]:
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "master.key"
    if not key_file.exists():
        key_file.write_text(MasterKey.generate_text() + "\n", encoding="ascii")
        key_file.chmod(0o600)
    token_file = directory / "admin.token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(32) + "\n", encoding="ascii")
        token_file.chmod(0o600)
    token = token_file.read_text(encoding="ascii").strip()
    raw = {
        "database": {"url": "sqlite:///keystead-demo.db"},
        "providers": {"mock": {"type": "mock",
                               "models": ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"],
                               "mock": {"chunk_delay_ms": 20}},
                      # A second deployment that fails a third of its calls: the route below
                      # retries them on the healthy one (watch x-keystead-attempts).
                      "mock-flaky": {"type": "mock", "models": ["flaky-gpt-4o-mini"],
                                     "mock": {"chunk_delay_ms": 20, "failure_rate": 0.33,
                                              "failure_status": 503, "seed": 7}}},
        "routes": {"support-default": {
            "description": "the demo's route: two deployments, a fallback, a cache",
            "deployments": [{"provider": "mock-flaky", "model": "gpt-4o-mini"},
                            {"provider": "mock", "model": "gpt-4o-mini"}],
            "fallbacks": ["gpt-4o"],
            "cache": {"ttl": "10m"},
            "degraded": {"static_reply": "The assistant is busy; please try again soon."}}},
        "logging": {"level": "info"},
    }
    config = parse_config(raw, {"KEYSTEAD_DEMO_ADMIN": token}, source="demo defaults")
    config = config.model_copy(update={"admin": config.admin.model_copy(
        update={"token": __import__("pydantic").SecretStr(token)})})
    master = load_master_key(None, key_file)
    return LoadedConfig(config, None, directory), master, token


@click.command("demo")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: Path(os.environ.get("KEYSTEAD_DEMO_DIR",
                                                  Path.home() / ".keystead" / "demo")),
              help="Where the demo keeps its database and keys [default: ~/.keystead/demo].")
@friendly
def demo(port: int, host: str, directory: Path) -> None:
    """Run the gateway with a built-in mock provider: no account, no network."""
    import uvicorn

    from keystead.cli.demo import announce, ensure_demo_key
    from keystead.server.app import create_app

    configure_logging("warning")
    loaded, master, token = _demo_loaded(directory)

    async def on_ready(runtime: object) -> None:
        key = await ensure_demo_key(runtime, directory)  # type: ignore[arg-type]
        announce(key, f"http://{host}:{port}", token, directory)

    app = create_app(loaded, master=master, on_ready=on_ready)
    _run_until_stopped(uvicorn.Server(_uvicorn_config(app, host, port, 5)))  # type: ignore[arg-type]


@click.command("mock-upstream")
@click.option("--port", type=int, default=9090, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--latency-ms", type=float, default=0.0, help="Delay before each answer.")
@click.option("--chunk-delay-ms", type=float, default=0.0, help="Delay between stream chunks.")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Share of requests that fail with --failure-status.")
@click.option("--failure-status", type=int, default=500)
@click.option("--api-key", help="Require this bearer key (to test key injection).")
@click.option("--seed", type=int, help="Seed for the failure dice.")
@click.option("--faults", metavar="SCRIPT",
              help="A fault script for every request, e.g. '429:retry_ms=500,503,ok' "
                   "(docs/testing-faults.md).")
def mock_upstream(port: int, host: str, latency_ms: float, chunk_delay_ms: float,
                  failure_rate: float, failure_status: int, api_key: str | None,
                  seed: int | None, faults: str | None) -> None:
    """Serve the built-in mock provider on its own (OpenAI wire format)."""
    from keystead.providers.mock_faults import FaultSpecError
    from keystead.providers.mock_upstream import MockSettings, serve_mock

    try:
        settings = MockSettings(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms,
                                failure_rate=failure_rate, failure_status=failure_status,
                                seed=seed, api_key=api_key, faults=faults)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    click.echo(f"mock upstream on http://{host}:{port}/v1", err=True)
    asyncio.run(serve_mock(host, port, settings))


COMMANDS = [serve, demo, mock_upstream]
