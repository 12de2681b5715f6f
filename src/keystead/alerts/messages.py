"""What a person reads: what happened, where, the numbers, since when, what to do.

Built from an `Alert` only (names, ids, numbers the rules wrote), never from a secret. One
message, three renderings: text (Slack, e-mail), and the JSON of the signed webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from keystead.alerts.model import Alert

__all__ = ["Kind", "Message", "runbook_link", "slack_escape", "test_message"]

Kind = Literal["firing", "resolved", "test"]
_MARK = {"firing": ":rotating_light: FIRING", "resolved": ":white_check_mark: RESOLVED",
         "test": ":wave: TEST"}


def runbook_link(base: str, rule: str) -> str:
    return f"{base}#alert-{rule.replace('_', '-')}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _line(value: str) -> str:
    """A value on one line: a key's owner or name (operator text, often from the admin API) or a
    provider's reason must not start a line of its own ("rule: ...") in the message."""
    return "".join(c if c.isprintable() else " " for c in value)


def slack_escape(text: str) -> str:
    """Slack's three control characters as entities: `<!channel>`, `<@U123>` or a
    `<https://evil|link>` in a key's owner or name stay literal text, not a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True, slots=True)
class Message:
    kind: Kind
    alert: Alert
    at: float  # when it fired or resolved
    runbook: str

    @property
    def headline(self) -> str:
        label = {"firing": "FIRING", "resolved": "RESOLVED", "test": "TEST"}[self.kind]
        return f"[keystead {label}] {self.alert.title}"

    def text(self, *, mark: bool = False) -> str:
        alert = self.alert
        head = f"{_MARK[self.kind]} {_line(alert.title)}" if mark else _line(self.headline)
        lines = [head, f"rule: {alert.rule} ({alert.severity}), subject: {_line(alert.subject)}"]
        if alert.where:
            lines.append("where: " + ", ".join(f"{k}={_line(v)}" for k, v in alert.where.items()))
        if alert.numbers:
            lines.append("numbers: " + ", ".join(f"{k}={_line(v)}"
                                                 for k, v in alert.numbers.items()))
        lines.append(f"since: {_iso(alert.since)}")
        if self.kind == "resolved":
            lines.append(f"resolved: {_iso(self.at)}")
        elif alert.action:
            lines.append(f"what to do: {_line(alert.action)}")
        lines.append(f"runbook: {self.runbook}")
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        alert = self.alert
        return {"kind": self.kind, "rule": alert.rule, "subject": alert.subject,
                "title": alert.title, "severity": alert.severity, "where": dict(alert.where),
                "numbers": dict(alert.numbers), "since": _iso(alert.since), "at": _iso(self.at),
                "action": alert.action, "runbook": self.runbook, "text": self.text()}


def test_message(now: float, runbook_base: str) -> Message:
    alert = Alert(rule="test", subject="test", title="test message from keystead: this channel "
                                                      "works", since=now,
                  action="Nothing: `keystead alerts test` sent it.", severity="info")
    return Message("test", alert, now, runbook_link(runbook_base, "test"))
