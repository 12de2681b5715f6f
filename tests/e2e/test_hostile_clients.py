"""Hostile clients against a real `keystead serve` over raw sockets (issue 13): slow clients get
deadlines, forwarded headers from a client are not believed, hostile bytes get a 4xx and never
a dropped connection."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.harness import (
    http,
    prepare_config,
    read_env_file,
    start_server,
    stop,
    wait_for_rows,
)

pytestmark = pytest.mark.e2e

DEADLINE_S = 1.0  # header, body and idle timeouts of this test's server


@dataclass
class Server:
    base_url: str
    port: int
    db: Path
    admin_token: str

    def key(self, name: str, **fields: object) -> str:
        status, _, body = http("POST", self.base_url + "/admin/keys",
                               body={"name": name, **fields},
                               headers={"authorization": f"Bearer {self.admin_token}"})
        assert status == 201, body
        return str(json.loads(body)["key"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("hostile")
    config = prepare_config(directory, overrides={"server": {
        "header_timeout_s": DEADLINE_S, "body_timeout_s": DEADLINE_S,
        "idle_timeout_s": DEADLINE_S}})
    proc, base_url = start_server(config, directory / "server.log")
    env = read_env_file(directory / ".env")
    try:
        yield Server(base_url, int(base_url.rsplit(":", 1)[1]), directory / "keystead.db",
                     env["KEYSTEAD_ADMIN_TOKEN"])
    finally:
        assert stop(proc) == 0


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def exchange(server: Server, request: bytes) -> tuple[int, bytes]:
    """One raw request on a fresh connection (Connection: close); the status and body."""
    with connect(server) as sock:
        sock.sendall(request)
        reply = read_all(sock)
    assert reply, "the server dropped the connection without an answer"
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def post(path: str, body: bytes, *headers: bytes) -> bytes:
    lines = [b"POST " + path.encode() + b" HTTP/1.1", b"host: x", b"connection: close",
             b"content-type: application/json", b"content-length: %d" % len(body), *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# --- slow clients -----------------------------------------------------------------------------

def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        reply = read_all(sock)
    waited = time.monotonic() - started
    assert DEADLINE_S * 0.8 <= waited < DEADLINE_S + 4
    assert reply.startswith(b"HTTP/1.1 408")


def test_headers_trickled_a_byte_at_a_time_get_a_408(server: Server) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        reply = b""
        with pytest.raises(OSError):  # the server closes while we still write
            for _ in range(100):
                sock.sendall(b"x")
                time.sleep(0.2)
                if time.monotonic() - started > DEADLINE_S + 5:
                    break
        reply = read_all(sock)
    assert time.monotonic() - started < DEADLINE_S + 5
    assert reply.startswith(b"HTTP/1.1 408")


def test_a_body_that_never_arrives_is_408_request_timeout_and_recorded(server: Server) -> None:
    key = server.key("dev-slowbody-test")
    with connect(server) as sock:
        sock.sendall(post("/v1/chat/completions", b"", f"authorization: Bearer {key}".encode())
                     .replace(b"content-length: 0", b"content-length: 500") + b'{"model":')
        reply = read_all(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply
    assert json.loads(body)["error"]["code"] == "request_timeout"
    key_id = key.split("_")[1][:8]
    rows = wait_for_rows(server.db, "key_id = ?", (key_id,), 1)
    assert [(r["status"], r["error_code"]) for r in rows] == [(408, "request_timeout")]


def test_an_admin_body_that_never_arrives_is_cut_off_too(server: Server) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"POST /admin/keys HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n"
                     b"content-type: application/json\r\n\r\n{")
        reply = read_all(sock)
    assert time.monotonic() - started < DEADLINE_S + 5
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408")


def test_a_huge_content_length_is_413_at_once(server: Server) -> None:
    key = server.key("dev-length-test")
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                     b"authorization: Bearer " + key.encode() + b"\r\n"
                     b"content-length: 100000000000\r\n\r\n")
        head = sock.recv(65536)
    assert time.monotonic() - started < DEADLINE_S
    assert head.startswith(b"HTTP/1.1 413")


def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    key = server.key("dev-idle-test")
    body = json.dumps({"model": "gpt-4o-mini",
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    with connect(server) as sock:
        sock.sendall(post("/v1/chat/completions", body, f"authorization: Bearer {key}".encode())
                     .replace(b"connection: close", b"connection: keep-alive"))
        started = time.monotonic()
        reply = read_all(sock)  # the answer, then the close when the connection idles
    assert reply.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < DEADLINE_S + 5


# --- forwarded headers ------------------------------------------------------------------------

def test_x_forwarded_for_from_an_untrusted_client_is_not_believed(server: Server) -> None:
    """uvicorn believed X-Forwarded-For from 127.0.0.1 by default: an allowlist of 10.0.0.0/8
    was passed from loopback by claiming 10.1.2.3."""
    key = server.key("dev-allowlist-test", ip_allowlist=["10.0.0.0/8"])
    body = json.dumps({"model": "gpt-4o-mini",
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    for forged in (b"x-forwarded-for: 10.1.2.3", b"forwarded: for=10.1.2.3",
                   b"x-real-ip: 10.1.2.3"):
        status, reply = exchange(server, post("/v1/chat/completions", body,
                                              f"authorization: Bearer {key}".encode(), forged))
        assert status == 403, reply
        assert json.loads(reply)["error"]["code"] == "ip_not_allowed"


# --- hostile bytes ----------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    b'{"model":"gpt\xff\xfe","messages":[]}',
    b'{"model":"gpt-4o\\u0000\\r\\nx","messages":[]}',
    b'{"model":"gpt-4o-mini","messages":' + b"[" * 1000 + b"]" * 1000 + b"}",
    b'{"model":"gpt-4o-mini","messages":[],"max_tokens":-1000000000}',
    b'{"model":"gpt-4o-mini","messages":[],"max_tokens":99999999999999999999999999}',
    b"\x00\x01\x02",
])
def test_hostile_bodies_get_a_4xx_never_a_drop(server: Server, payload: bytes) -> None:
    key = server.key(f"dev-bytes{abs(hash(payload)) % 100000}-test")
    status, reply = exchange(server, post("/v1/chat/completions", payload,
                                          f"authorization: Bearer {key}".encode()))
    assert status == 400, reply
    assert json.loads(reply)["error"]["code"]


@pytest.mark.parametrize("token", ["kst_é.x".encode(), b"ksk_\xff\xfe", b"kst_" + b"a" * 8000])
def test_hostile_tokens_get_a_401_never_a_drop(server: Server, token: bytes) -> None:
    status, reply = exchange(server, post("/v1/chat/completions", b"{}",
                                          b"authorization: Bearer " + token))
    assert status == 401, reply


# --- found in review ----------------------------------------------------------------------------

def test_a_pipelined_request_waits_without_its_deadline_running(server: Server) -> None:
    """The second request's body arrives with it, but uvicorn stops reading while the first
    (slower than the body deadline) runs: its deadline must start when it does, not kill the
    first with a 408."""
    key = server.key("dev-pipeline-test")
    slow = json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "[[mock:latency=2500]] hi"}]}).encode()
    big = json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "x" * 1_000_000}]}).encode()
    auth = f"authorization: Bearer {key}".encode()
    first = post("/v1/chat/completions", slow, auth).replace(b"connection: close",
                                                            b"connection: keep-alive")
    with connect(server) as sock:
        sock.sendall(first + post("/v1/chat/completions", big, auth))
        reply = read_all(sock)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)
    assert statuses == [b"200", b"200"], reply[:300]


@pytest.mark.parametrize(("request_head", "status"), [
    (b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n", b"431"),
    (b"GET /v1/models HTTP/1.1\r\nhost: x\r\n" + b"x-h: 1\r\n" * 300 + b"\r\n", b"431"),
    (b"GET /v1/models?" + b"q" * 20_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n", b"414"),
])
def test_oversized_request_heads_are_refused_before_the_app(server: Server,
                                                            request_head: bytes,
                                                            status: bytes) -> None:
    with connect(server) as sock:
        with contextlib.suppress(OSError):  # the server may close while we still write
            sock.sendall(request_head)
        reply = read_all(sock)
    assert reply.split(b" ", 2)[1] == status, reply[:200]
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_too_large"


def test_a_websocket_upgrade_is_plain_http_not_a_500(server: Server) -> None:
    status, reply = exchange(server, b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: "
                             b"Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n"
                             b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert status == 401, reply  # answered as HTTP: no key given
