"""Shared test helpers: a config on a temporary SQLite file, and an in-process ASGI client that
runs the real app (lifespan included) against the built-in mock upstream. No sockets, fast."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from keystead.config.load import LoadedConfig, parse_config
from keystead.runtime import Runtime
from keystead.server.app import KeysteadApp, create_app
from keystead.state.sql_store import SQLStore
from keystead.vault.envelope import MasterKey

ADMIN_TOKEN = "test-admin-token-0123456789"
T = TypeVar("T")


def with_open_store(store: SQLStore, body: Callable[[SQLStore], Awaitable[T]]) -> T:
    """Open `store`, run `body` on it in a fresh event loop, close it whatever happens."""

    async def main() -> T:
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def make_loaded(tmp_path: Path, raw: dict[str, Any] | None = None,
                env: dict[str, str] | None = None) -> LoadedConfig:
    """A config like a user's: SQLite in tmp_path, a fresh master key, a mock provider."""
    base: dict[str, Any] = {
        "database": {"url": f"sqlite:///{tmp_path / 'keystead.db'}"},
        "vault": {"master_key": "${KEYSTEAD_MASTER_KEY}"},
        "admin": {"token": "${KEYSTEAD_ADMIN_TOKEN}"},
        "providers": {"mock": {"type": "mock",
                               "models": ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]}},
        "usage": {"flush_interval_s": 0.05},
        "logging": {"requests": True},
    }
    for section, value in (raw or {}).items():
        if isinstance(value, dict) and isinstance(base.get(section), dict):
            base[section] = {**base[section], **value}
        else:
            base[section] = value
    master_file = tmp_path / "master.key"
    if not master_file.exists():
        master_file.write_text(MasterKey.generate_text())
    environ = {"KEYSTEAD_MASTER_KEY": master_file.read_text().strip(),
               "KEYSTEAD_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}
    return LoadedConfig(parse_config(base, environ, source="test"), None, tmp_path)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[bytes]:
        return [e for e in self.body.split(b"\n\n") if e]


class AppClient:
    """Calls the ASGI app in-process, like an HTTP client would."""

    def __init__(self, app: KeysteadApp):
        self.app = app

    @property
    def runtime(self) -> Runtime:
        assert self.app.runtime is not None
        return self.app.runtime

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      body: bytes | None = None, headers: dict[str, str] | None = None,
                      key: str | None = None, disconnect_after_chunks: int | None = None,
                      disconnect_after_s: float | None = None,
                      client: tuple[str, int] = ("127.0.0.1", 50000)) -> Reply:
        if json_body is not None:
            body = json.dumps(json_body).encode()
        all_headers = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            all_headers["authorization"] = f"Bearer {key}"
        path_only, _, query = path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path_only,
                 "raw_path": path_only.encode(), "query_string": query.encode(),
                 "root_path": "", "client": client, "server": ("testserver", 80),
                 "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()]}
        sent_body = False
        gone = asyncio.Event()
        status = 0
        response_headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body or b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers.update((k.decode(), v.decode()) for k, v in message["headers"])
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    chunks.append(message["body"])
                if disconnect_after_chunks is not None and len(chunks) >= disconnect_after_chunks:
                    gone.set()

        timer = None
        if disconnect_after_s is not None:
            timer = asyncio.get_running_loop().call_later(disconnect_after_s, gone.set)
        try:
            await self.app(scope, receive, send)
        finally:
            if timer is not None:
                timer.cancel()
        return Reply(status, response_headers, b"".join(chunks))

    async def admin(self, method: str, path: str, json_body: Any = None) -> Reply:
        return await self.request(method, path, json_body=json_body,
                                  headers={"authorization": f"Bearer {ADMIN_TOKEN}"})

    async def create_key(self, name: str = "dev-test-app", **fields: Any) -> str:
        reply = await self.admin("POST", "/admin/keys", {"name": name, **fields})
        assert reply.status == 201, reply.body
        return str(reply.json()["key"])


@asynccontextmanager
async def running_app(loaded: LoadedConfig) -> AsyncIterator[AppClient]:
    """The app after its lifespan startup; shut down (ledger flushed) on exit."""
    app = create_app(loaded)
    await app.startup()
    try:
        yield AppClient(app)
    finally:
        await app.shutdown()


def run_in_app(tmp_path: Path, test: Callable[[AppClient], Awaitable[None]],
               raw: dict[str, Any] | None = None, env: dict[str, str] | None = None,
               timeout_s: float = 60) -> None:
    """`test(client)` against a fresh app on `make_loaded(tmp_path, raw, env)`."""
    loaded = make_loaded(tmp_path, raw=raw, env=env)

    async def main() -> None:
        async with running_app(loaded) as client:
            await asyncio.wait_for(test(client), timeout_s)

    asyncio.run(main())


@asynccontextmanager
async def serving_http(app: Any) -> AsyncIterator[str]:
    """An aiohttp `web.Application` served on a free loopback port; yields its base URL."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serving_asgi(app: Any) -> AsyncIterator[str]:
    """An ASGI app (the gateway, a mock upstream) served by uvicorn on a free loopback port, in
    this event loop; yields its base URL."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
