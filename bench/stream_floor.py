"""The Python floor for streams: granian (RSGI, uvloop) + aiohttp, relaying an SSE answer.

bench/floor.py's fastest variant reads the whole upstream answer and returns it in one call;
a stream has to go out as it comes. This one checks the bearer key, opens the upstream
request, and sends each upstream read on as it arrives (`response_stream` +
`send_bytes`): no SSE framing, no usage, no checks. keystead's cost per streamed event is
measured against it (`python -m bench.stream_events`).

    python bench/stream_floor.py --port P --upstream http://127.0.0.1:U --key K
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import aiohttp

_ENV_UPSTREAM = "KEYSTEAD_FLOOR_UPSTREAM"
_ENV_KEY = "KEYSTEAD_FLOOR_KEY"
_JSON = {"content-type": "application/json"}
_SSE = [("content-type", "text/event-stream")]


class RSGIStreamFloor:
    def __init__(self, upstream: str, key: str) -> None:
        self.upstream = upstream
        self.expected = f"Bearer {key}"
        self.session: aiohttp.ClientSession | None = None

    def __rsgi_init__(self, loop: Any) -> None:
        async def open_session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(base_url=self.upstream,
                                         connector=aiohttp.TCPConnector(limit=0),
                                         auto_decompress=False)

        self.session = loop.run_until_complete(open_session())

    def __rsgi_del__(self, loop: Any) -> None:
        if self.session is not None:
            loop.run_until_complete(self.session.close())

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        body = await protocol()
        if scope.headers.get("authorization") != self.expected:
            protocol.response_bytes(401, [("content-type", "application/json")], b"{}")
            return
        assert self.session is not None
        async with self.session.post(scope.path, data=body, headers=_JSON) as response:
            transport = protocol.response_stream(response.status, _SSE)
            async for chunk in response.content.iter_any():
                await transport.send_bytes(chunk)


def rsgi_app() -> RSGIStreamFloor:
    return RSGIStreamFloor(os.environ[_ENV_UPSTREAM], os.environ[_ENV_KEY])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes

    os.environ[_ENV_UPSTREAM] = args.upstream
    os.environ[_ENV_KEY] = args.key
    Granian("stream_floor:rsgi_app", factory=True, working_dir=Path(__file__).parent,
            address="127.0.0.1", port=args.port, workers=1, interface=Interfaces.RSGI,
            runtime_mode=RuntimeModes.st, loop=Loops.uvloop, http=HTTPModes.http1,
            websockets=False, log_enabled=False, log_access=False).serve()


if __name__ == "__main__":
    main()
