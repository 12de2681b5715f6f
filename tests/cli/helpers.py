"""What the CLI tests share: a project directory with its config and store, a CliRunner call, and
a real gateway on a socket (in a thread) for the --server paths."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from pydantic import SecretStr

from keystead.cli.main import cli
from keystead.config.load import LoadedConfig, load_config
from keystead.config.model import AdminConfig
from keystead.runtime import Runtime
from keystead.server.app import KeysteadApp, create_app

CONFIG = """\
database:
  url: sqlite:///keystead.db
vault:
  master_key: ${KEYSTEAD_MASTER_KEY}
providers:
  mock:
    type: mock
    models: [gpt-4o-mini, gpt-4o, text-embedding-3-small]
"""
ADMIN_TOKEN = "cli-test-admin-token-0123456789"


@dataclass
class Project:
    dir: Path
    config: Path
    master_key: str

    @property
    def db(self) -> Path:
        return self.dir / "keystead.db"

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
            master_key: str | None = None) -> Result:
        environ = {"KEYSTEAD_MASTER_KEY": master_key or self.master_key, **(env or {})}
        return CliRunner().invoke(cli, ["--config", str(self.config), *args], input=input,
                                  env=environ, catch_exceptions=False)

    def ok(self, *args: str, **kwargs: Any) -> Result:
        result = self.run(*args, **kwargs)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result

    def create_key(self, name: str, *options: str) -> dict[str, Any]:
        return dict(json.loads(self.ok("keys", "create", name, *options, "--json").stdout))

    def create_team(self, name: str, *options: str) -> dict[str, Any]:
        return dict(json.loads(self.ok("teams", "create", name, *options, "--json").stdout))

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db)
        try:
            return list(conn.execute(query, params))
        finally:
            conn.close()

    def stored_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.dir.glob("keystead.db*"))

    def loaded(self) -> LoadedConfig:
        """The project's config, with an admin token so a gateway on it serves the admin API."""
        loaded = load_config(self.config, environ={"KEYSTEAD_MASTER_KEY": self.master_key})
        config = loaded.config.model_copy(
            update={"admin": AdminConfig(token=SecretStr(ADMIN_TOKEN))})
        return LoadedConfig(config, loaded.path, loaded.base_dir)


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Remote:
    """A running gateway on the project's store, and the CLI pointed at it with --server."""

    url: str
    app: KeysteadApp

    @property
    def runtime(self) -> Runtime:
        assert self.app.runtime is not None
        return self.app.runtime

    def run(self, *args: str, token: str = ADMIN_TOKEN, input: str | None = None) -> Result:
        # No --config: the remote backend needs nothing from this machine but the token.
        return invoke("--server", self.url, "--admin-token", token, *args, input=input)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self.run(*args, input=input)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args).stdout)


@contextmanager
def serving(loaded: LoadedConfig) -> Iterator[Remote]:
    """The real app under uvicorn in a thread of this process (uvicorn leaves signals alone off
    the main thread), on a free port; stopped and drained on exit."""
    import uvicorn

    port = closed_port()
    app = create_app(loaded)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="cli-test-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the gateway thread died while starting"
        assert time.monotonic() < deadline, "the gateway did not start within 30 s"
        time.sleep(0.01)
    try:
        yield Remote(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
