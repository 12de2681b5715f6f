"""`alerts:` rules evaluated in the background and where they are sent (docs/monitoring.md).

Every rule has a block under `alerts.rules` (on/off, its thresholds and windows, a cool-down
that overrides `alerts.cooldown`, and whether its "resolved" message is sent); every channel a
block under `alerts.channels` (its kind, where it sends, which rules it takes). URLs, the HMAC
secret and the SMTP password are secrets: references such as `${ALERTS_SLACK_URL}` only.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from keystead.config.strict import Strict

__all__ = ["RULE_NAMES", "AlertsConfig", "ChannelConfig", "EmailChannelConfig",
           "RulesConfig", "SlackChannelConfig", "WebhookChannelConfig"]

# The rules, in the order `keystead alerts list` shows them (each one a field of RulesConfig).
RULE_NAMES = ("budget", "spend_spike", "error_rate", "rate_limited", "auth_failures",
              "new_source", "rotation", "unused_key", "provider_key_out", "breaker_open",
              "check_failing")

_CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# An address that cannot smuggle a header into the message (no CR/LF, spaces, commas, <>).
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


def _duration(value: str, minimum_s: float = 1.0) -> str:
    from keystead.durations import parse_duration

    if parse_duration(value) < minimum_s:
        raise ValueError(f"must be at least {minimum_s:g}s")
    return value


class _Rule(Strict):
    enabled: bool = True
    # None: alerts.cooldown. How long after "resolved" the same alert may fire again.
    cooldown: str | None = None
    send_resolved: bool = True

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: str | None) -> str | None:
        return None if value is None else _duration(value, 0.0)


class BudgetRule(_Rule):
    # Percentages of a budget (per team, key and environment, per budget period).
    thresholds: tuple[int, ...] = (50, 80, 100)

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 1 <= v <= 1000 for v in value) or len(value) > 10:
            raise ValueError("write 1 to 10 percentages between 1 and 1000, e.g. [50, 80, 100]")
        return tuple(sorted(set(value)))


class SpendSpikeRule(_Rule):
    factor: float = Field(3.0, gt=1, le=1000)  # this hour's rate against the usual one
    min_spend_usd: Decimal = Field(Decimal("1"), ge=0)  # below this, a night's blip is quiet
    baseline_days: int = Field(7, ge=1, le=28)  # the same hour of this many previous days


class RateRule(_Rule):
    window: str = "5m"
    min_requests: int = Field(20, ge=1)
    ratio: float = Field(0.2, gt=0, le=1)  # the share of requests that failed (or got 429)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return _duration(value, 5.0)


class AuthFailuresRule(_Rule):
    window: str = "5m"
    min_count: int = Field(10, ge=1)  # 401s naming one key within the window

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return _duration(value, 5.0)


class NewSourceRule(_Rule):
    networks: bool = True  # a /24 (IPv4) or /48 (IPv6) the key never used
    user_agents: bool = True  # a user-agent family (product name) the key never used
    # A key's first uses teach it its sources: nothing alerts until it has been seen this long.
    learn_for: str = "24h"
    window: str = "1h"  # the alert stays firing this long after the first sighting
    max_per_key: int = Field(50, ge=1, le=1000)  # a key with more sources than this: not new
    send_resolved: bool = False

    @field_validator("learn_for", "window")
    @classmethod
    def _durations(cls, value: str) -> str:
        return _duration(value, 1.0)


class UnusedKeyRule(_Rule):
    after: str = "30d"  # an active key not used for this long (since its creation if never)

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        return _duration(value, 60.0)


class RotationRule(_Rule):
    """Uses keys.rotate_every and keys.remind_before."""


class PlainRule(_Rule):
    """A rule with no thresholds of its own (provider key out, breaker open, check failing)."""


class RulesConfig(Strict):
    budget: BudgetRule = BudgetRule()
    spend_spike: SpendSpikeRule = SpendSpikeRule()
    error_rate: RateRule = RateRule()  # 5xx answers per provider and per route
    rate_limited: RateRule = RateRule(ratio=0.3)  # 429 answers per provider and per route
    auth_failures: AuthFailuresRule = AuthFailuresRule()
    new_source: NewSourceRule = NewSourceRule()
    rotation: RotationRule = RotationRule()
    unused_key: UnusedKeyRule = UnusedKeyRule()
    provider_key_out: PlainRule = PlainRule()
    breaker_open: PlainRule = PlainRule()
    check_failing: PlainRule = PlainRule()


class _Channel(Strict):
    # The rules this channel takes (None: all of them).
    rules: tuple[str, ...] | None = None

    @field_validator("rules")
    @classmethod
    def _rules(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if name not in RULE_NAMES:
                raise ValueError(f"unknown rule {name!r}; the rules are {', '.join(RULE_NAMES)}")
        return value


def _http_url(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    if not text.startswith(("http://", "https://")) or not text.isprintable() \
            or any(c.isspace() for c in text) or len(text) > 2048:
        raise ValueError("must be an http:// or https:// URL")
    return value


class SlackChannelConfig(_Channel):
    """A Slack-compatible incoming webhook: `{"text": ...}` (Slack, Mattermost, Rocket.Chat)."""

    type: Literal["slack"]
    webhook_url: SecretStr

    _url = field_validator("webhook_url")(_http_url)


class WebhookChannelConfig(_Channel):
    """A JSON body signed with HMAC-SHA256: `X-Keystead-Signature: t=<unix ts>,v1=<hex>`."""

    type: Literal["webhook"]
    webhook_url: SecretStr
    secret: SecretStr

    _url = field_validator("webhook_url")(_http_url)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value


class EmailChannelConfig(_Channel):
    type: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    # starttls: plain connection upgraded (port 587); tls: TLS from the start (465); none: a
    # relay you trust (localhost, a private network), and then no login: a password never
    # travels in clear.
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = Field(None, max_length=256)
    password: SecretStr | None = None
    sender: str
    to: tuple[str, ...]

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _HOST.fullmatch(value):
            raise ValueError("must be a host name or an address")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not _ADDRESS.fullmatch(value):
            raise ValueError("must be a plain e-mail address (name@example.com)")
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(value) > 50:
            raise ValueError("write 1 to 50 addresses")
        for address in value:
            if not _ADDRESS.fullmatch(address):
                raise ValueError(f"{address!r} is not a plain e-mail address")
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None and (not value.isprintable() or not value):
            raise ValueError("must be printable text")
        return value

    @model_validator(mode="after")
    def _login(self) -> EmailChannelConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.security == "none" and self.password is not None:
            raise ValueError("security: none would send the password in clear; use starttls "
                             "(port 587) or tls (465), or a relay that needs no login")
        return self


ChannelConfig = Annotated[SlackChannelConfig | WebhookChannelConfig | EmailChannelConfig,
                          Field(discriminator="type")]


class AlertsConfig(Strict):
    enabled: bool = True
    evaluate_every: str = "60s"  # how often every gateway evaluates the rules
    cooldown: str = "30m"  # after "resolved", how long before the same alert can fire again
    # Where a message's "what to do" links to (the runbook's anchor per rule is appended).
    runbook_url: str = "https://github.com/keystead/keystead/blob/main/docs/runbook.md"
    send_timeout_s: float = Field(10.0, gt=0, le=120)  # one attempt at one channel
    retries: int = Field(3, ge=0, le=10)  # more attempts after a failed one, with backoff
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    rules: RulesConfig = RulesConfig()

    @field_validator("evaluate_every")
    @classmethod
    def _every(cls, value: str) -> str:
        return _duration(value, 1.0)

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: str) -> str:
        return _duration(value, 0.0)

    @field_validator("runbook_url")
    @classmethod
    def _runbook(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or not value.isprintable() \
                or any(c.isspace() for c in value) or len(value) > 512:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("channels")
    @classmethod
    def _names(cls, value: dict[str, ChannelConfig]) -> dict[str, ChannelConfig]:
        for name in value:
            if not _CHANNEL_NAME.fullmatch(name):
                raise ValueError(f"channel name {name!r} must be lowercase letters, digits, "
                                 "'-' or '_' (at most 32)")
        return value
