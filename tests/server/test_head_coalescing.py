"""server/protocol.py writes a whole answer's head and body in one `write` (uvicorn alone makes
two), a streamed answer's head with its first event, and never holds a head back while the app
waits: a real uvicorn server on a loopback socket, the protocol's writes counted on the way to
the real transport."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from keystead.server.protocol import GuardedHttpToolsProtocol


class CountedProtocol(GuardedHttpToolsProtocol):
    """Records every write the protocol and its cycles make on the socket's transport."""

    writes: list[bytes] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        real_write = transport.write

        def write(data: bytes | bytearray | memoryview) -> None:
            CountedProtocol.writes.append(bytes(data))
            real_write(data)

        transport.write = write  # type: ignore[method-assign]
        super().connection_made(transport)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/whole":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})
    elif scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"data: 2\n\n"})
    else:  # /late: the head now, the body much later
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4")]})
        await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"late"})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=CountedProtocol,
                            lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    sock = socket.create_server(("127.0.0.1", 0))  # bound now: a connection waits in its backlog
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def request(writer: asyncio.StreamWriter, path: str) -> None:
    writer.write(f"GET {path} HTTP/1.1\r\nhost: t\r\n\r\n".encode())
    await writer.drain()


def test_a_whole_answer_is_one_write_and_a_stream_starts_with_its_first_event() -> None:
    async def main() -> None:
        CountedProtocol.writes = []
        async with serving() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(2):  # the second on the same kept-alive connection
                await request(writer, "/whole")
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert await reader.readexactly(5) == b"hello"
            await request(writer, "/stream")
            await reader.readuntil(b"0\r\n\r\n")
            writer.close()
        whole, again, stream_first, *stream_rest = CountedProtocol.writes
        assert whole.startswith(b"HTTP/1.1 200 OK\r\n") and whole.endswith(b"\r\n\r\nhello")
        assert again.endswith(b"\r\n\r\nhello")
        assert stream_first.startswith(b"HTTP/1.1 200 OK\r\n")
        assert stream_first.endswith(b"\r\n\r\n9\r\ndata: 1\n\n\r\n")
        assert b"".join(stream_rest) == b"9\r\ndata: 2\n\n\r\n0\r\n\r\n"

    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_head_is_not_held_while_the_app_waits() -> None:
    async def main() -> None:
        CountedProtocol.writes = []
        async with serving() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await request(writer, "/late")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.3)  # body at 0.5 s
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert await reader.readexactly(4) == b"late"
            writer.close()
        assert CountedProtocol.writes[1] == b"late"

    asyncio.run(asyncio.wait_for(main(), 20))
