"""The Python floor: the least a pass-through in Python can do.

One bearer-key check, one shared keep-alive HTTP client, the upstream's bytes returned as they
are. No key table, no scopes, no pricing, no ledger, no logs. keystead with all of that on is
measured against it, three times:

- `--client httpx` (uvicorn, raw ASGI): the obvious choice, the naive floor;
- `--client aiohttp` (uvicorn, raw ASGI): keystead's own stack, so the gap to keystead is the
  price of its policy;
- `--server granian` (RSGI, uvloop, aiohttp): the fastest bare Python pass-through we found,
  the floor of issue 15. granian is a Rust HTTP server; its RSGI interface hands the app the
  whole body in one call and takes the response in one call (`response_bytes`), where ASGI
  builds a dict per message. `--interface asgi` runs the ASGI app under granian instead (measured
  slower: see docs/performance.md). orjson is the stack's JSON codec; the pass-through itself
  does no JSON work (the 401 body is encoded once at start).

The upstream client of either server can also be keystead's own (`--client h1`:
providers/h1.py, the pooled HTTP/1.1 client on httptools) or pyreqwest (`--client pyreqwest`,
a Rust client over reqwest/hyper on its own Tokio thread, pinned in the `bench` extra: it was
measured and not taken, see docs/performance.md "Transport"). `floor-granian` stays on aiohttp,
the floor issue 15 names; `floor-granian-h1` and `floor-granian-pyreqwest` are the variants.

    python bench/floor.py --port P --upstream http://127.0.0.1:U --key K
        [--client httpx|aiohttp|h1|pyreqwest] [--server uvicorn|granian]
        [--interface rsgi|asgi]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import uvicorn

UNAUTHORIZED = orjson.dumps({"error": "unauthorized"})
JSON_HEADERS = {"content-type": "application/json"}

# granian imports the app in its worker process by name: the settings travel in the environment.
_ENV_UPSTREAM = "KEYSTEAD_FLOOR_UPSTREAM"
_ENV_KEY = "KEYSTEAD_FLOOR_KEY"
_ENV_CLIENT = "KEYSTEAD_FLOOR_CLIENT"

Post = Any  # async (path, body) -> (status, content)


def _httpx_post(upstream: str) -> Any:
    client = httpx.AsyncClient(base_url=upstream, timeout=60.0,
                               limits=httpx.Limits(max_keepalive_connections=256))

    async def post(path: str, body: bytes) -> tuple[int, bytes]:
        response = await client.post(path, content=body, headers=JSON_HEADERS)
        return response.status_code, response.content

    return post


def _aiohttp_post(upstream: str) -> Any:
    session: aiohttp.ClientSession | None = None

    async def post(path: str, body: bytes) -> tuple[int, bytes]:
        nonlocal session
        if session is None:  # created inside the server's event loop
            session = aiohttp.ClientSession(base_url=upstream,
                                            connector=aiohttp.TCPConnector(limit=0))
        async with session.post(path, data=body, headers=JSON_HEADERS) as response:
            return response.status, await response.read()

    return post


def _h1_post(upstream: str) -> Post:
    from keystead.providers.h1 import H1Client

    client = H1Client()

    async def post(path: str, body: bytes) -> tuple[int, bytes]:
        response = await client.request("POST", upstream + path, dict(JSON_HEADERS), body,
                                        read_timeout=60.0, what="floor")
        return response.status, await response.read()

    return post


def _pyreqwest_post(upstream: str) -> Post:
    from pyreqwest.client import Client, ClientBuilder

    client: Client | None = None

    async def post(path: str, body: bytes) -> tuple[int, bytes]:
        nonlocal client
        if client is None:  # built inside the server's event loop
            client = ClientBuilder().max_connections(None).follow_redirects(False) \
                .gzip(False).build()
        response = await client.post(upstream + path).headers(JSON_HEADERS) \
            .body_bytes(body).build().send()
        return response.status, bytes(await response.bytes())

    return post


POSTS = {"httpx": _httpx_post, "aiohttp": _aiohttp_post, "h1": _h1_post,
         "pyreqwest": _pyreqwest_post}


def create_app(upstream: str, key: str, client: str = "httpx") -> Any:
    """The raw ASGI app (uvicorn, or granian's ASGI interface)."""
    post = POSTS[client](upstream)
    expected = f"Bearer {key}".encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        authorized = dict(scope["headers"]).get(b"authorization") == expected
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if not authorized:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": UNAUTHORIZED})
            return
        status, content = await post(scope["path"], body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": content})

    return app


class RSGIFloor:
    """The RSGI app: the body in one await, the response in one call, aiohttp (or `client`)
    to the upstream."""

    def __init__(self, upstream: str, key: str, client: str = "aiohttp") -> None:
        self.upstream = upstream
        self.expected = f"Bearer {key}"
        self.client = client
        self.session: aiohttp.ClientSession | None = None
        self.post: Post = None

    def __rsgi_init__(self, loop: Any) -> None:  # granian's worker loop (uvloop), not running
        if self.client != "aiohttp":
            self.post = POSTS[self.client](self.upstream)
            return

        async def open_session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(base_url=self.upstream,
                                         connector=aiohttp.TCPConnector(limit=0))

        self.session = loop.run_until_complete(open_session())

    def __rsgi_del__(self, loop: Any) -> None:
        if self.session is not None:
            loop.run_until_complete(self.session.close())

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        body = await protocol()
        if scope.headers.get("authorization") != self.expected:
            protocol.response_bytes(401, [("content-type", "application/json")], UNAUTHORIZED)
            return
        if self.post is not None:
            status, content = await self.post(scope.path, body)
            protocol.response_bytes(status, [("content-type", "application/json")], content)
            return
        assert self.session is not None
        async with self.session.post(scope.path, data=body, headers=JSON_HEADERS) as response:
            content = await response.read()
        protocol.response_bytes(response.status, [("content-type", "application/json")],
                                content)


def rsgi_app() -> RSGIFloor:
    """granian's factory target for `--interface rsgi`."""
    return RSGIFloor(os.environ[_ENV_UPSTREAM], os.environ[_ENV_KEY],
                     os.environ.get(_ENV_CLIENT, "aiohttp"))


def asgi_app() -> Any:
    """granian's factory target for `--interface asgi`."""
    return create_app(os.environ[_ENV_UPSTREAM], os.environ[_ENV_KEY],
                      os.environ.get(_ENV_CLIENT, "aiohttp"))


def _run_granian(port: int, upstream: str, key: str, interface: str, client: str) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes

    os.environ[_ENV_UPSTREAM] = upstream
    os.environ[_ENV_KEY] = key
    os.environ[_ENV_CLIENT] = client
    Granian(
        f"floor:{interface}_app", factory=True, working_dir=Path(__file__).parent,
        address="127.0.0.1", port=port, workers=1,
        # asginl: ASGI without the lifespan protocol, which the raw app does not speak
        interface=Interfaces.RSGI if interface == "rsgi" else Interfaces.ASGINL,
        # one Rust runtime thread on the same core as the loop: granian's choice for RSGI, set
        # for ASGI too (it would pick the multi-threaded runtime), so the two compare fairly
        runtime_mode=RuntimeModes.st, loop=Loops.uvloop, http=HTTPModes.http1, websockets=False,
        log_enabled=False, log_access=False,
    ).serve()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client", choices=tuple(POSTS), default=None,
                        help="the upstream client (default: httpx on uvicorn, aiohttp on "
                             "granian)")
    parser.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn")
    parser.add_argument("--interface", choices=("rsgi", "asgi"), default="rsgi",
                        help="granian only")
    args = parser.parse_args()
    if args.server == "granian":
        _run_granian(args.port, args.upstream, args.key, args.interface,
                     args.client or "aiohttp")
        return
    uvicorn.run(create_app(args.upstream, args.key, args.client or "httpx"), host="127.0.0.1",
                port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
