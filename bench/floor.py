"""The Python floor: the least a pass-through in Python can do.

A raw ASGI app on uvicorn (its defaults: uvloop and httptools when installed), one bearer-key
check, one shared keep-alive HTTP client, the upstream's bytes returned as they are. No key
table, no scopes, no pricing, no ledger, no logs. keystead with all of that on is measured
against it, twice:

- `--client httpx`: the obvious choice, the naive floor;
- `--client aiohttp`: keystead's own client, so the gap to keystead is the price of its policy.

    python bench/floor.py --port P --upstream http://127.0.0.1:U --key K [--client aiohttp]
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import httpx
import uvicorn


def _httpx_post(upstream: str) -> Any:
    client = httpx.AsyncClient(base_url=upstream, timeout=60.0,
                               limits=httpx.Limits(max_keepalive_connections=256))

    async def post(path: str, body: bytes) -> tuple[int, bytes]:
        response = await client.post(path, content=body,
                                     headers={"content-type": "application/json"})
        return response.status_code, response.content

    return post


def _aiohttp_post(upstream: str) -> Any:
    session: aiohttp.ClientSession | None = None

    async def post(path: str, body: bytes) -> tuple[int, bytes]:
        nonlocal session
        if session is None:  # created inside the server's event loop
            session = aiohttp.ClientSession(base_url=upstream,
                                            connector=aiohttp.TCPConnector(limit=0))
        async with session.post(path, data=body,
                                headers={"content-type": "application/json"}) as response:
            return response.status, await response.read()

    return post


def create_app(upstream: str, key: str, client: str = "httpx") -> Any:
    post = _aiohttp_post(upstream) if client == "aiohttp" else _httpx_post(upstream)
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
            await send({"type": "http.response.body", "body": b'{"error":"unauthorized"}'})
            return
        status, content = await post(scope["path"], body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": content})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client", choices=("httpx", "aiohttp"), default="httpx")
    args = parser.parse_args()
    uvicorn.run(create_app(args.upstream, args.key, args.client), host="127.0.0.1", port=args.port,
                log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
