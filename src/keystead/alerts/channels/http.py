"""Slack-compatible incoming webhooks and the generic JSON webhook signed with HMAC-SHA256.

The signature: `X-Keystead-Signature: t=<unix seconds>,v1=<hex>` where hex is
HMAC-SHA256(secret, "<t>." + body). A receiver recomputes it over the raw body, compares in
constant time and refuses a `t` older than a few minutes (a replay). docs/monitoring.md shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import orjson
from pydantic import SecretStr

from keystead.alerts.channels.base import DeliveryFailed
from keystead.alerts.messages import Message, slack_escape

__all__ = ["SIGNATURE_HEADER", "SlackChannel", "WebhookChannel", "post_json", "sign"]

SIGNATURE_HEADER = "X-Keystead-Signature"


def sign(secret: bytes, body: bytes, ts: int) -> str:
    digest = hmac.new(secret, str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


async def post_json(url: SecretStr, body: bytes, headers: dict[str, str], timeout_s: float
                    ) -> None:
    """POST a JSON body; DeliveryFailed says why not (never the URL: it is a secret). A
    redirect is a refusal (never followed to wherever it points), the reply body is not read.
    The incident webhook (control/incident.py) posts through it too."""
    import aiohttp  # loaded by the server already; the CLI only for `alerts test`

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                url.get_secret_value(), data=body, allow_redirects=False,
                headers={"content-type": "application/json", **headers}) as reply:
            # The status says it all: the body is never read (a receiver answering with an
            # endless or huge one would hold the delivery, and the memory, until the timeout).
            if reply.status >= 300:
                raise DeliveryFailed(f"HTTP {reply.status}")
    except TimeoutError:  # (aiohttp's timeouts are also ClientErrors)
        raise DeliveryFailed(f"no answer within {timeout_s:g}s") from None
    except (aiohttp.ClientError, OSError) as exc:
        # Never the exception's text: it may quote the URL, which is a secret.
        raise DeliveryFailed(type(exc).__name__) from None


class SlackChannel:
    def __init__(self, name: str, url: SecretStr, rules: tuple[str, ...] | None = None):
        self.name = name
        self.rules = rules
        self._url = url

    async def send(self, message: Message, timeout_s: float) -> None:
        body = orjson.dumps({"text": slack_escape(message.text(mark=True))})
        await post_json(self._url, body, {}, timeout_s)


class WebhookChannel:
    def __init__(self, name: str, url: SecretStr, secret: SecretStr,
                 rules: tuple[str, ...] | None = None):
        self.name = name
        self.rules = rules
        self._url = url
        self._secret = secret

    async def send(self, message: Message, timeout_s: float) -> None:
        body = orjson.dumps(message.payload())
        signature = sign(self._secret.get_secret_value().encode(), body, int(time.time()))
        await post_json(self._url, body, {SIGNATURE_HEADER: signature}, timeout_s)
