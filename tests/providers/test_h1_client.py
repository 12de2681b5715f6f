"""providers/h1.py, keystead's upstream HTTP/1.1 client, against real local sockets: a scripted
asyncio server writes exactly the bytes each case needs (chunks, early closes, resets, stalls,
TLS), so every rule in the module's docstring is proved on the wire."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keystead.errors import UpstreamTimeout, UpstreamUnreachable
from keystead.providers.h1 import H1Client
from keystead.providers.transport import HttpTransport, UpstreamResponse

Handler = Callable[["Peer"], Awaitable[None]]


class Peer:
    """One accepted connection, as the server sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 index: int) -> None:
        self.reader, self.writer, self.index = reader, writer, index

    async def request(self) -> tuple[str, dict[str, str], bytes] | None:
        """The next request (request line, lower-cased headers, body); None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        line, *fields = head.decode().split("\r\n")[:-2]
        headers = {}
        for field in fields:
            name, _, value = field.partition(":")
            assert name.lower() not in headers, f"{name} sent twice"
            headers[name.lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return line, headers, body

    async def answer(self, body: bytes = b"ok", *, status: str = "200 OK",
                     extra: str = "") -> None:
        self.writer.write(f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
                          .encode() + body)
        await self.writer.drain()

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0), as a crashed server does."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.closed = asyncio.Event()  # a client closed its side


@asynccontextmanager
async def serving(handler: Handler, *, tls: ssl.SSLContext | None = None,
                  ) -> AsyncIterator[tuple[str, Server]]:
    state = Server()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        state.open += 1
        state.most_open = max(state.most_open, state.open)
        try:
            await handler(Peer(reader, writer, state.connections))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            state.open -= 1
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", state
    finally:
        server.close()


def keep_answering(body: bytes = b"ok", extra: str = "") -> Handler:
    async def handler(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            peer_requests.append(request)
            await peer.answer(body, extra=extra)
    peer_requests: list[tuple[str, dict[str, str], bytes]] = []
    handler.requests = peer_requests  # type: ignore[attr-defined]
    return handler


async def post(client: H1Client, url: str, body: bytes | None = b"{}", *,
               method: str = "POST", read_timeout: float = 5.0,
               headers: dict[str, str] | None = None) -> UpstreamResponse:
    return await client.request(method, url, headers or {}, body,
                                read_timeout=read_timeout, what="t")


async def fails_with(handler: Handler, error: type[Exception], match: str | None = None) -> None:
    """A POST to a server that answers as `handler` does fails with `error`."""
    async with serving(handler) as (base, _):
        client = H1Client()
        with pytest.raises(error, match=match):
            await post(client, base + "/")
        await client.close()


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


# keep-alive and the pool

def test_one_connection_serves_requests_one_after_another() -> None:
    handler = keep_answering(b'{"a":1}')

    async def main() -> None:
        async with serving(handler) as (base, server):
            client = H1Client()
            for _ in range(5):
                response = await post(client, f"{base}/v1/chat?x=1",
                                      headers={"authorization": "Bearer k"})
                assert response.status == 200
                assert await response.read() == b'{"a":1}'
            await client.close()
            assert server.connections == 1

    run(main())
    line, headers, body = handler.requests[0]  # type: ignore[attr-defined]
    assert line == "POST /v1/chat?x=1 HTTP/1.1"
    assert headers["authorization"] == "Bearer k"
    assert headers["host"].startswith("127.0.0.1:")
    assert headers["content-length"] == "2" and body == b"{}"
    # nothing the gateway did not ask for: no compression offered, no user agent
    assert "accept-encoding" not in headers and "user-agent" not in headers


def test_the_pool_limit_caps_open_connections() -> None:
    async def slow(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.05)
            await peer.answer()

    async def main() -> None:
        async with serving(slow) as (base, server):
            client = H1Client(limit=2)
            bodies = await asyncio.gather(*(
                _read(post(client, base + "/")) for _ in range(6)))
            await client.close()
            assert bodies == [b"ok"] * 6
            assert server.most_open == 2 and server.connections == 2

    run(main())


async def _read(pending: Awaitable[UpstreamResponse]) -> bytes:
    return await (await pending).read()


def test_an_answer_with_connection_close_is_not_reused() -> None:
    async def closing(peer: Peer) -> None:
        await peer.request()
        await peer.answer(b"bye", extra="connection: close\r\n")

    async def main() -> None:
        async with serving(closing) as (base, server):
            client = H1Client()
            for _ in range(3):
                assert await (await post(client, base + "/")).read() == b"bye"
            await client.close()
            assert server.connections == 3

    run(main())


def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def one_then_close(peer: Peer) -> None:
        await peer.request()
        await peer.answer(b"one")  # keep-alive by HTTP/1.1's default, then closed anyway

    async def main() -> None:
        async with serving(one_then_close) as (base, server):
            client = H1Client()
            assert await (await post(client, base + "/")).read() == b"one"
            await asyncio.sleep(0.1)  # the server's FIN is in
            assert await (await post(client, base + "/")).read() == b"one"
            await client.close()
            assert server.connections == 2

    run(main())


def _stale_server() -> Handler:
    """The keep-alive race: the second request on a connection arrives as the server closes
    it, so it is read and dropped without an answer. A fresh connection is answered."""
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.answer(b"first")
        request = await peer.request()
        if request is not None:
            handler.dropped.append(request[0])  # type: ignore[attr-defined]
    handler.dropped = []  # type: ignore[attr-defined]
    return handler


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_idempotent_request_on_a_stale_connection_is_sent_once_more(method: str) -> None:
    handler = _stale_server()

    async def main() -> None:
        async with serving(handler) as (base, server):
            client = H1Client()
            await (await post(client, base + "/", None, method=method)).read()
            response = await post(client, base + "/", None, method=method)
            assert await response.read() == b"first"  # from a new connection
            await client.close()
            assert server.connections == 2

    run(main())
    assert handler.dropped == [f"{method} / HTTP/1.1"]  # type: ignore[attr-defined]


def test_a_post_on_a_stale_connection_is_never_sent_twice() -> None:
    handler = _stale_server()

    async def main() -> None:
        async with serving(handler) as (base, server):
            client = H1Client()
            await (await post(client, base + "/")).read()
            with pytest.raises(UpstreamUnreachable):
                await post(client, base + "/")
            await client.close()
            assert server.connections == 1  # no second attempt anywhere

    run(main())
    assert handler.dropped == ["POST / HTTP/1.1"]  # type: ignore[attr-defined]


# bodies

def test_chunked_and_content_length_bodies_and_case_insensitive_headers() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                          b"X-Request-ID: abc\r\nContent-Type: application/json\r\n\r\n")
        for part in (b'{"a":', b'"b"}'):
            peer.writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await peer.writer.drain()
            await asyncio.sleep(0.01)
        peer.writer.write(b"0\r\n\r\n")
        await peer.request()
        await peer.answer(b"x" * 100_000, extra="X-Kind: long\r\n")
        await peer.request()

    async def main() -> None:
        async with serving(handler) as (base, server):
            client = H1Client()
            response = await post(client, base + "/")
            assert response.headers["x-request-id"] == "abc"
            assert response.headers["CONTENT-TYPE"] == "application/json"
            assert await response.read() == b'{"a":"b"}'
            response = await post(client, base + "/")
            assert response.headers["x-kind"] == "long"
            assert await response.read() == b"x" * 100_000
            await client.close()
            assert server.connections == 1  # both bodies ended where they said

    run(main())


def test_a_body_that_runs_to_the_close() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ")
        await peer.writer.drain()
        await asyncio.sleep(0.02)
        peer.writer.write(b"part two")

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            assert await (await post(client, base + "/")).read() == b"part one, part two"
            await client.close()

    run(main())


def test_a_stream_is_handed_on_as_it_arrives() -> None:
    """The first event is read before the server has sent the rest: time to first byte."""
    async def main() -> None:
        go_on = asyncio.Event()

        async def handler(peer: Peer) -> None:
            await peer.request()
            peer.writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                              b"transfer-encoding: chunked\r\n\r\n")
            event = b"data: {}\n\n"
            peer.writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await peer.writer.drain()
            await go_on.wait()
            peer.writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(b"data: [DONE]\n\n"),
                                                         b"data: [DONE]\n\n"))
            await peer.request()
            await peer.answer(b"next")

        async with serving(handler) as (base, server):
            client = H1Client()
            response = await post(client, base + "/")
            chunks = aiter(response.iter_chunks())
            assert await anext(chunks) == b"data: {}\n\n"
            go_on.set()
            assert [c async for c in chunks] == [b"data: [DONE]\n\n"]
            response.release()
            assert await (await post(client, base + "/")).read() == b"next"
            await client.close()
            assert server.connections == 1  # a stream read to its end leaves it reusable

    run(main())


def test_a_large_body_to_a_slow_reader_arrives_whole() -> None:
    """Reading pauses while a consumer is behind and resumes as it catches up."""
    blob = bytes(range(256)) * 8192  # 2 MiB

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.answer(blob)
        await peer.request()

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            response = await post(client, base + "/", read_timeout=0.3)
            parts = []
            async for chunk in response.iter_chunks():
                parts.append(chunk)
                await asyncio.sleep(0.02)
            assert b"".join(parts) == blob
            await client.close()

    run(main())


def test_no_decompression_and_no_redirects() -> None:
    packed = gzip.compress(b'{"a":1}')

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.answer(packed, extra="content-encoding: gzip\r\n")
        await peer.request()
        await peer.answer(b"", status="302 Found", extra="location: /elsewhere\r\n")
        await peer.request()

    async def main() -> None:
        async with serving(handler) as (base, server):
            client = H1Client()
            response = await post(client, base + "/")
            assert response.headers["content-encoding"] == "gzip"
            assert await response.read() == packed  # the bytes as they came
            response = await post(client, base + "/")
            assert response.status == 302 and response.headers["location"] == "/elsewhere"
            assert await response.read() == b""
            await client.close()
            assert server.connections == 1

    run(main())


def test_an_interim_answer_is_skipped() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n")
        await peer.answer(b"final", extra="x-final: 1\r\n")
        await peer.request()

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            response = await post(client, base + "/")
            assert response.status == 200 and "link" not in response.headers
            assert await response.read() == b"final"
            await client.close()

    run(main())


# failures

@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_connection_lost_mid_answer_is_unreachable(how: str) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
        await peer.writer.drain()
        await asyncio.sleep(0.05)
        if how == "reset":
            peer.reset()
        # else: the handler returns and the server closes

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            response = await post(client, base + "/")
            with pytest.raises(UpstreamUnreachable):
                await response.read()
            response = await post(client, base + "/")
            chunks = aiter(response.iter_chunks())
            assert await anext(chunks) == b"0123456789"
            with pytest.raises(UpstreamUnreachable):
                await anext(chunks)
            await client.close()

    run(main())


def test_a_connection_closed_before_any_answer_is_unreachable() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()

    run(fails_with(handler, UpstreamUnreachable))


def test_a_refused_connection_is_unreachable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> None:
        client = H1Client()
        with pytest.raises(UpstreamUnreachable, match="unreachable"):
            await post(client, f"http://127.0.0.1:{port}/")
        await client.close()

    run(main())


def test_a_garbled_answer_is_unreachable() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"SMTP ready\r\n\r\n")
        await peer.request()

    run(fails_with(handler, UpstreamUnreachable))


def test_silence_is_a_timeout_before_and_after_the_head() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(1)  # no head
        await peer.request()

    async def stalls_mid_body(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234")
        await asyncio.sleep(1)

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            with pytest.raises(UpstreamTimeout):
                await post(client, base + "/", read_timeout=0.2)
            await client.close()
        async with serving(stalls_mid_body) as (base, _):
            client = H1Client()
            response = await post(client, base + "/", read_timeout=0.2)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(UpstreamTimeout):
                await response.read()
            assert 0.15 < loop.time() - started < 0.5
            await client.close()

    run(main())


def test_a_slow_but_steady_answer_is_no_timeout() -> None:
    """The read timeout is the longest silence, not the whole answer's time."""
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(6):
            await asyncio.sleep(0.1)
            peer.writer.write(b"1\r\nx\r\n")
        peer.writer.write(b"0\r\n\r\n")
        await peer.request()

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            response = await post(client, base + "/", read_timeout=0.25)
            assert await response.read() == b"xxxxxx"
            await client.close()

    run(main())


def test_no_connection_in_time_is_a_timeout() -> None:
    """A server that accepts TCP but never finishes the TLS handshake."""
    async def mute(peer: Peer) -> None:
        await asyncio.sleep(2)

    async def main() -> None:
        async with serving(mute) as (base, _):
            client = H1Client(connect_timeout=0.2)
            with pytest.raises(UpstreamTimeout, match="no connection"):
                await post(client, base.replace("http:", "https:") + "/")
            await client.close()

    run(main())


def test_abort_drops_the_connection_and_release_keeps_only_a_whole_answer() -> None:
    async def main() -> None:
        peers: list[Peer] = []
        eofs = []

        async def handler(peer: Peer) -> None:
            peers.append(peer)
            while await peer.request() is not None:
                peer.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n0123456789")
                await peer.writer.drain()
                await asyncio.sleep(0.05)
                peer.writer.write(b"0123456789")
            eofs.append(peer.index)

        async with serving(handler) as (base, server):
            client = H1Client()
            response = await post(client, base + "/")
            chunks = aiter(response.iter_chunks())
            assert await anext(chunks) == b"0123456789"
            response.abort()  # the provider hears the disconnect
            with pytest.raises(UpstreamUnreachable):  # and a reader still waiting, this
                await anext(chunks)
            await asyncio.sleep(0.1)
            assert eofs == [1]
            response = await post(client, base + "/")
            response.release()  # half read: the connection cannot serve another request
            await asyncio.sleep(0.1)
            assert eofs == [1, 2]
            response = await post(client, base + "/")
            assert await response.read() == b"01234567890123456789"
            response.release()  # whole: back to the pool, and a second release is harmless
            response.abort()  # after the end: does not close a pooled connection
            assert await (await post(client, base + "/")).read() == b"0123456789" * 2
            await client.close()
            assert server.connections == 3

    run(main())


def test_a_line_break_in_a_header_is_refused() -> None:
    async def main() -> None:
        client = H1Client()
        for name, value in (("x-a", "b\r\nx-injected: 1"), ("x-a\nb", "c"), ("x-a", "b\rc")):
            with pytest.raises(ValueError, match="line break"):
                await post(client, "http://127.0.0.1:9/", headers={name: value})
        await client.close()

    run(main())


def test_a_target_with_spaces_or_unicode_is_escaped() -> None:
    handler = keep_answering()

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            await (await post(client, base + "/a b/é?q=1#frag", None, method="GET")).read()
            await (await post(client, base + "?only=query", None, method="GET")).read()
            await client.close()

    run(main())
    assert [r[0] for r in handler.requests] == [  # type: ignore[attr-defined]
        "GET /a%20b/%C3%A9?q=1 HTTP/1.1", "GET /?only=query HTTP/1.1"]


# TLS

def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_checks_the_certificate_and_sends_the_host_name(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, "localhost")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore
    trusting = ssl.create_default_context(cafile=str(cert))
    handler = keep_answering(b"secure")

    async def main() -> None:
        async with serving(handler, tls=server_tls) as (base, server):
            port = base.rsplit(":", 1)[1]
            transport = HttpTransport(ssl_context=trusting)
            for _ in range(2):
                response = await transport.send("POST", f"https://localhost:{port}/v1", {},
                                                b"{}", read_timeout=5, what="t")
                assert await response.read() == b"secure"
            await transport.close()
            assert server.connections == 1
            # the certificate does not name 127.0.0.1: refused
            client = H1Client(ssl_context=trusting)
            with pytest.raises(UpstreamUnreachable, match="SSLCertVerificationError"):
                await post(client, f"https://127.0.0.1:{port}/")
            await client.close()
            # the system's roots do not know this certificate: refused
            client = H1Client()
            with pytest.raises(UpstreamUnreachable, match="SSLCertVerificationError"):
                await post(client, f"https://localhost:{port}/")
            await client.close()

    run(main())
    assert names[0] == "localhost"


# a hostile or broken upstream

def test_a_body_larger_than_the_buffer_is_read_whole() -> None:
    """read() takes the whole body: reading must not pause for a consumer that is read()
    itself (a non-streamed answer of a few MiB, e.g. many embeddings)."""
    blob = bytes(range(256)) * 8192  # 2 MiB, well past the pause mark

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.answer(blob)
        await peer.request()

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            response = await post(client, base + "/", read_timeout=1.0)
            assert await asyncio.wait_for(response.read(), 3) == blob
            await client.close()

    run(main())


@pytest.mark.parametrize("flood", ["many headers", "one long header", "endless interim answers",
                                   "endless trailers"])
def test_an_endless_head_is_refused_not_buffered(flood: str) -> None:
    """Bytes that are no body (a head, 1xx answers, trailers) are held in memory until their
    end: past 64 KiB the answer is refused, as aiohttp refused a line past 8 KiB."""
    starts = {"many headers": b"HTTP/1.1 200 OK\r\n",
              "one long header": b"HTTP/1.1 200 OK\r\nx-long: ",
              "endless interim answers": b"",
              "endless trailers": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                                  b"2\r\nok\r\n0\r\n"}
    unit = {"many headers": b"x-a: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n",
            "one long header": b"a" * 64,
            "endless interim answers": b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
            "endless trailers": b"x-a: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n"}[flood]

    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(starts[flood])
        for _ in range(64):  # 4 MiB and more, then silence
            peer.writer.write(unit * (65536 // len(unit) + 1))
            await peer.writer.drain()
        await asyncio.sleep(2)

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            with pytest.raises(UpstreamUnreachable, match="too large"):
                response = await post(client, base + "/", read_timeout=1.0)
                await response.read()
            await client.close()

    run(main())


def test_a_waiter_cancelled_as_it_is_woken_passes_the_connection_on() -> None:
    """At the pool limit, the waiter woken for a free connection is cancelled before it runs
    (its client left, its deadline passed): the next waiter gets the connection, rather than
    waiting for good beside an idle one."""
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
            await asyncio.sleep(0.1)  # the body later: the others queue meanwhile
            peer.writer.write(b"ok")

    async def main() -> None:
        async with serving(handler) as (base, server):
            client = H1Client(limit=1)
            held = await post(client, base + "/")
            first = asyncio.ensure_future(_read(post(client, base + "/")))
            second = asyncio.ensure_future(_read(post(client, base + "/")))
            await asyncio.sleep(0.05)  # both wait for the one connection
            give_back = client._give_back

            def give_back_then_cancel(conn: object, keep_alive: bool) -> None:
                give_back(conn, keep_alive)  # type: ignore[arg-type]
                first.cancel()  # woken, not yet run
            client._give_back = give_back_then_cancel  # type: ignore[method-assign]
            assert await held.read() == b"ok"  # the connection goes back, waking `first`
            client._give_back = give_back  # type: ignore[method-assign]
            assert await asyncio.wait_for(second, 2) == b"ok"
            assert first.cancelled()
            await client.close()
            assert server.connections == 1

    run(main())


def test_the_answer_to_a_head_has_no_body() -> None:
    """Its content-length is the GET's: no body follows (RFC 9110 9.3.2)."""
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            response = await post(client, base + "/", None, method="HEAD", read_timeout=1.0)
            assert response.status == 200 and response.headers["content-length"] == "5"
            assert await asyncio.wait_for(response.read(), 0.5) == b""
            response = await post(client, base + "/", None, method="HEAD", read_timeout=1.0)
            assert await asyncio.wait_for(response.read(), 0.5) == b""
            await client.close()

    run(main())


def test_a_protocol_switch_nobody_asked_for_is_unreachable(caplog: pytest.LogCaptureFixture,
                                                           ) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                          b"connection: upgrade\r\n\r\n\x81\x00")
        await asyncio.sleep(1)

    async def main() -> None:
        async with serving(handler) as (base, _):
            client = H1Client()
            with pytest.raises(UpstreamUnreachable):
                await post(client, base + "/", read_timeout=0.5)
            await client.close()

    run(main())
    assert "Fatal error" not in caplog.text  # handled, not asyncio's last resort


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/v1", "http://127.0.0.1:99999/v1",
                                 "http://[::1/v1", "http:///v1"])
def test_a_url_the_client_cannot_use_is_unreachable(url: str) -> None:
    """As aiohttp's InvalidURL was: an OpenAI-format 502 for that provider, not a crash."""
    async def main() -> None:
        client = H1Client()
        with pytest.raises(UpstreamUnreachable, match="invalid URL"):
            await post(client, url)
        await client.close()

    run(main())


def test_an_empty_port_is_the_default_one() -> None:
    async def main() -> None:
        client = H1Client(connect_timeout=0.5)
        with pytest.raises((UpstreamUnreachable, UpstreamTimeout)) as caught:
            await post(client, "http://127.0.0.1:/v1")  # port 80: nothing listens there
        assert "invalid URL" not in str(caught.value)
        await client.close()

    run(main())


def test_an_internationalised_host_goes_out_in_its_ascii_form() -> None:
    from keystead.providers.h1 import _Origin

    origin = _Origin("https", "b\u00fccher.example:8443")
    assert (origin.host, origin.port, origin.host_header) == \
        ("xn--bcher-kva.example", 8443, "xn--bcher-kva.example:8443")
    assert _Origin("http", "b\u00fccher.example").host_header == "xn--bcher-kva.example"
