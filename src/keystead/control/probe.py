"""`providers test`: one call to a provider with one key, and when it fails, one line that says
what failed and what to do (connection refused, DNS, TLS, 401, 403, 404, timeout, ...).

The transport turns network failures into `UpstreamUnreachable` / `UpstreamTimeout`; the
aiohttp or OS error it translated stays on the exception's `__context__`, which is where the
cause is read from.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from keystead.checks.probe import body
from keystead.errors import UpstreamTimeout
from keystead.providers.base import Endpoint, Provider
from keystead.providers.key_pool import PoolKey

__all__ = ["PROBE_TIMEOUT_S", "probe"]

# A probe waits this long at most, whatever server.upstream_timeout_s says (600 s by default).
PROBE_TIMEOUT_S = 30.0
_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


async def probe(provider: Provider, key: PoolKey | None) -> dict[str, Any]:
    """One call with `key` (pinned: no other key, no state change): ok, status, latency, detail."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            if provider.capabilities.list_models:
                response = await provider.send(Endpoint.MODELS, "", None, stream=False, key=key)
            else:
                model = next(iter(provider.listed_models), "gpt-4o-mini")
                payload = body(Endpoint.CHAT, model, provider.type, 1)
                response = await provider.send(Endpoint.CHAT, model, payload, stream=False,
                                               key=key)
            answer = await response.read()
    except Exception as exc:  # the whole point is to report it
        return {"ok": False, "status": None,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                "detail": failure(exc, provider)}
    latency = round((time.perf_counter() - started) * 1000, 1)
    status = response.status
    return {"ok": status < 400, "status": status, "latency_ms": latency,
            "detail": "ok" if status < 400 else refusal(status, answer, provider)}


def failure(exc: BaseException, provider: Provider) -> str:
    """What kept the call from getting an answer, and the fix."""
    where = _host(provider)
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError) \
                or type(cause).__name__ == "ClientConnectorCertificateError":
            why = getattr(getattr(cause, "certificate_error", cause), "verify_message", None)
            return (f"TLS: the certificate of {where} is not trusted ({why or 'verify failed'}):"
                    " fix the server's certificate, or for a private CA point SSL_CERT_FILE at "
                    "its bundle before starting keystead")
        if isinstance(cause, ssl.SSLError):
            return (f"TLS: the handshake with {where} failed: if it is a plain HTTP server, "
                    "write http:// in base_url, not https://")
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "ClientConnectorDNSError":
            return (f"DNS: the host name of {where} does not resolve: check the host in "
                    "base_url, and this machine's DNS")
        if isinstance(cause, ConnectionRefusedError) \
                or (isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED):
            return (f"connection refused by {where}: nothing listens there; check the port in "
                    "base_url, or start the server")
        if isinstance(cause, TimeoutError | UpstreamTimeout):
            limit = min(PROBE_TIMEOUT_S, provider.read_timeout)
            return (f"timeout: {where} did not answer within {limit:g} s: check the host and "
                    "port in base_url, and that no firewall or proxy drops the traffic")
    return getattr(exc, "message", None) or type(exc).__name__


def refusal(status: int, answer: bytes, provider: Provider) -> str:
    """What an error status means for a provider's configuration, and the fix."""
    code = _error_code(answer)
    said = f" ({code})" if code else ""
    name = provider.name
    if status == 401:
        return (f"401{said}: the provider refused the key: it is wrong, revoked or for another "
                f"service; replace it (`keystead providers set-key {name}` reads it from "
                "stdin), or fix where its reference points")
    if status == 403:
        return (f"403{said}: the key may not do this: check its permissions, project or "
                "region at the provider, and any IP allowlist there")
    if status == 404:
        if code == "DeploymentNotFound":
            return (f"404{said}: no Azure deployment of that name: map each model to a "
                    "deployment that exists (--deployment MODEL=DEPLOYMENT)")
        return (f"404{said}: nothing at {_url(provider)}: base_url looks wrong; "
                + _base_hint(provider))
    if status == 429:
        return (f"429{said}: the key works but is rate-limited or out of quota: check the "
                "account's limits and billing, or retry later")
    if status >= 500:
        return f"HTTP {status}{said}: the provider failed; retry later, or check its status page"
    return f"HTTP {status}{said}: the provider refused the test call"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _safe(url: str) -> str:
    """`url` without user:password (a base_url may carry them)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _host(provider: Provider) -> str:
    parts = urlsplit(provider.base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _url(provider: Provider) -> str:
    endpoint = Endpoint.MODELS if provider.capabilities.list_models else Endpoint.CHAT
    method = "GET" if endpoint is Endpoint.MODELS else "POST"
    url = provider.request_target(endpoint, next(iter(provider.listed_models), "gpt-4o-mini"),
                                  None)[0]
    return f"{method} {_safe(url).split('?', 1)[0]}"


def _base_hint(provider: Provider) -> str:
    kind = provider.type
    if kind == "azure":
        return "Azure's is the resource URL, https://NAME.openai.azure.com, without /openai"
    if kind == "anthropic":
        return "Anthropic's is https://api.anthropic.com, without /v1"
    if kind == "gemini":
        return "Gemini's is https://generativelanguage.googleapis.com/v1beta/openai"
    return ("an OpenAI-compatible base_url usually ends in /v1 "
            "(https://api.openai.com/v1, http://localhost:11434/v1)")


def _error_code(answer: bytes) -> str | None:
    """The provider's error code, when it is a short identifier (never free text)."""
    import orjson

    try:
        document = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None
