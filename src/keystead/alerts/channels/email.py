"""E-mail over SMTP (smtplib in a worker thread: the event loop never waits on the server).

STARTTLS (587), TLS from the start (465), or none (a relay on localhost). The password is a
secret reference; an error names the SMTP reply code or the exception's type, never the
password.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

from pydantic import SecretStr

from keystead.alerts.channels.base import DeliveryFailed
from keystead.alerts.messages import Message
from keystead.config.alerts import EmailChannelConfig

__all__ = ["EmailChannel"]


class EmailChannel:
    def __init__(self, name: str, config: EmailChannelConfig):
        self.name = name
        self.rules = config.rules
        self._config = config

    async def send(self, message: Message, timeout_s: float) -> None:
        mail = EmailMessage()
        mail["From"] = self._config.sender
        mail["To"] = ", ".join(self._config.to)
        # One line: the title is built from validated names, but a header never takes CR/LF.
        mail["Subject"] = " ".join(message.headline.split())[:200]
        mail.set_content(message.text())
        await asyncio.to_thread(_send, self._config, mail, timeout_s)


def _send(config: EmailChannelConfig, mail: EmailMessage, timeout_s: float) -> None:
    import smtplib
    import ssl

    password: SecretStr | None = config.password
    try:
        client: smtplib.SMTP
        if config.security == "tls":
            client = smtplib.SMTP_SSL(config.host, config.port, timeout=timeout_s,
                                      context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=timeout_s)
        try:
            if config.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if config.username is not None and password is not None:
                client.login(config.username, password.get_secret_value())
            client.send_message(mail)
            client.quit()
        finally:
            client.close()  # (not `with`: its QUIT after a refusal would hide the reply code)
    except smtplib.SMTPResponseException as exc:
        raise DeliveryFailed(f"SMTP {exc.smtp_code}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(type(exc).__name__) from None
