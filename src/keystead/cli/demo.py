"""`keystead demo`: the gateway on embedded defaults with built-in mock providers."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

from keystead.cli.context import friendly
from keystead.cli.serve import run_until_stopped, uvicorn_config
from keystead.config.load import LoadedConfig, parse_config
from keystead.logs import configure_logging
from keystead.vault.envelope import MasterKey
from keystead.vault.store import load_master_key

__all__ = ["COMMANDS"]


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

    from keystead.cli.demo_runtime import announce, ensure_demo_key
    from keystead.server.app import create_app

    configure_logging("warning")
    loaded, master, token = _demo_loaded(directory)

    async def on_ready(runtime: object) -> None:
        key = await ensure_demo_key(runtime, directory)  # type: ignore[arg-type]
        announce(key, f"http://{host}:{port}", token, directory)

    app = create_app(loaded, master=master, on_ready=on_ready)
    run_until_stopped(uvicorn.Server(uvicorn_config(app, host, port, 5)))  # type: ignore[arg-type]


COMMANDS = [demo]
