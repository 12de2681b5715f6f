"""`keystead providers test`: when the call fails, one line says what failed and what to do.

Every failure is real: a closed port, a name that does not resolve, TLS against a plain HTTP
server and against a self-signed certificate, a server that never answers, and a small HTTP
server that answers like OpenAI does (401, 403, 404 off /v1, 429, 500).
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cli.helpers import Project, closed_port
from keystead.control import probe

_ERRORS = {"401": ("invalid_api_key", "Incorrect API key provided: sk-wr***ng."),
           "403": ("unsupported_country_region_territory", "Country not supported."),
           "429": ("insufficient_quota", "You exceeded your current quota."),
           "500": (None, "The server had an error.")}


class _OpenAILike(BaseHTTPRequestHandler):
    """GET /STATUS/v1/models answers STATUS with OpenAI's error body; GET /v1/models answers a
    list; anything else 404, as api.openai.com does for a path without /v1."""

    def do_GET(self) -> None:
        first, _, rest = self.path.lstrip("/").partition("/")
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "gpt-4o-mini"}]})
        elif first in _ERRORS and rest == "v1/models":
            code, message = _ERRORS[first]
            self._send(int(first), {"error": {"message": message, "type": "invalid_request_error",
                                              "code": code, "param": None}})
        else:
            self._send(404, {"error": {"message": f"Invalid URL (GET {self.path})",
                                       "type": "invalid_request_error", "code": None}})

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def _serve(server: ThreadingHTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    yield from _serve(ThreadingHTTPServer(("127.0.0.1", 0), _OpenAILike))


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAILike)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _tested(project: Project, name: str, base_url: str, *extra: str) -> str:
    project.ok("providers", "add", name, "--type", "openai", "--base-url", base_url,
               "--api-key-stdin", *extra, input="sk-probe-test-key-0123456789\n")
    result = project.run("providers", "test", name)
    assert result.exit_code == 1, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"FAILED: {name} ")
    assert "sk-probe-test-key" not in result.output
    return line


@pytest.mark.parametrize(("path", "says"), [
    ("/401/v1", ["401 (invalid_api_key): the provider refused the key",
                 "keystead providers set-key p401"]),
    ("/403/v1", ["403 (unsupported_country_region_territory): the key may not do this",
                 "check its permissions"]),
    ("", ["404: nothing at GET http://", ":{port}/models: base_url looks wrong",
          "usually ends in /v1"]),
    ("/429/v1", ["429 (insufficient_quota): the key works but is rate-limited or out of quota",
                 "billing"]),
    ("/500/v1", ["HTTP 500: the provider failed; retry later"]),
])
def test_an_http_refusal_says_what_it_means_and_the_fix(project: Project, upstream: str,
                                                        path: str, says: list[str]) -> None:
    name = "p" + (path.split("/")[1] if path else "404")
    line = _tested(project, name, f"http://{upstream}{path}")
    for text in says:
        assert text.format(port=upstream.rsplit(":", 1)[1]) in line


def test_a_working_provider_still_says_ok(project: Project, upstream: str) -> None:
    project.ok("providers", "add", "fine", "--type", "openai", "--base-url",
               f"http://{upstream}/v1", "--api-key-stdin", input="sk-fine-0123456789\n")
    assert project.ok("providers", "test", "fine").stdout.startswith("ok: fine status=200")


def test_connection_refused_names_the_port(project: Project) -> None:
    port = closed_port()
    line = _tested(project, "refused", f"http://127.0.0.1:{port}/v1")
    assert f"connection refused by 127.0.0.1:{port}: nothing listens there" in line


def test_a_host_that_does_not_resolve_is_a_dns_failure(project: Project) -> None:
    line = _tested(project, "dns", "https://api.keystead-no-such-host.invalid/v1")
    assert "DNS: the host name of api.keystead-no-such-host.invalid:443 does not resolve" in line


def test_https_to_a_plain_http_server_says_write_http(project: Project, upstream: str) -> None:
    line = _tested(project, "tlsplain", f"https://{upstream}/v1")
    assert "TLS: the handshake with" in line and "write http:// in base_url" in line


def test_an_untrusted_certificate_says_so_and_how_to_trust_a_private_ca(
        project: Project, self_signed: str) -> None:
    port = self_signed.rsplit(":", 1)[1]
    line = _tested(project, "tlscert", f"https://localhost:{port}/v1")
    assert f"TLS: the certificate of localhost:{port} is not trusted (self-signed" in line
    assert "SSL_CERT_FILE" in line


def test_a_server_that_never_answers_is_a_timeout(project: Project, silent: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "PROBE_TIMEOUT_S", 0.5)
    line = _tested(project, "slow", f"http://{silent}/v1")
    assert f"timeout: {silent} did not answer within 0.5 s" in line


def test_a_base_url_with_a_password_is_refused_without_showing_it(project: Project,
                                                                  upstream: str) -> None:
    # aiohttp refuses such a URL next to the key's header (a ValueError the transport does not
    # translate): refused where it enters instead, as a secret in the wrong place.
    refused = project.run("providers", "add", "creds", "--type", "openai", "--base-url",
                          f"http://user:hunter2-secret@{upstream}/v1", "--api-key-stdin",
                          input="sk-probe-test-key-0123456789\n")
    assert refused.exit_code == 2
    assert "must not hold user:password@" in refused.stderr
    assert "hunter2" not in refused.output
