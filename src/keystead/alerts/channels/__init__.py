"""Where alerts go: Slack-compatible webhooks, a signed JSON webhook, e-mail over SMTP."""

from __future__ import annotations

from keystead.alerts.channels.base import Channel, DeliveryFailed, deliver, takes
from keystead.config.alerts import (
    AlertsConfig,
    EmailChannelConfig,
    SlackChannelConfig,
    WebhookChannelConfig,
)

__all__ = ["Channel", "DeliveryFailed", "build_channels", "deliver", "takes"]


def build_channels(config: AlertsConfig) -> list[Channel]:
    channels: list[Channel] = []
    for name, spec in config.channels.items():
        if isinstance(spec, SlackChannelConfig):
            from keystead.alerts.channels.http import SlackChannel

            channels.append(SlackChannel(name, spec.webhook_url, spec.rules))
        elif isinstance(spec, WebhookChannelConfig):
            from keystead.alerts.channels.http import WebhookChannel

            channels.append(WebhookChannel(name, spec.webhook_url, spec.secret, spec.rules))
        elif isinstance(spec, EmailChannelConfig):
            from keystead.alerts.channels.email import EmailChannel

            channels.append(EmailChannel(name, spec))
    return channels
