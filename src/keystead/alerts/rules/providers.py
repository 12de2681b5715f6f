"""Upstream rules: a provider key taken out of its pool, a breaker open, a synthetic check
failing (events `check.failed` / `check.recovered` written by the checks)."""

from __future__ import annotations

from keystead.alerts.model import Alert, Snapshot
from keystead.alerts.rules.common import iso
from keystead.config.alerts import PlainRule

__all__ = ["CHECK_FAILED", "CHECK_RECOVERED", "breaker_open", "check_failing", "clip",
           "provider_key_out"]

CHECK_FAILED = "check.failed"
CHECK_RECOVERED = "check.recovered"


def clip(text: object, size: int = 200) -> str:
    """Text that came from a provider or another process, fit for a message: masked secrets,
    one line, bounded."""
    from keystead.control.typed_text import redact

    value = redact(str(text)) or ""
    value = "".join(c if c.isprintable() else " " for c in value[: size * 2])
    return value[:size]


def provider_key_out(snapshot: Snapshot, settings: PlainRule) -> list[Alert]:
    alerts: list[Alert] = []
    for state in snapshot.provider_keys:
        alerts.append(Alert(
            rule="provider_key_out", subject=f"{state.provider}:{state.fingerprint[:16]}",
            title=f"provider {state.provider}'s key {state.label} was taken out of its pool "
                  f"({state.state})",
            since=state.since, where={"provider": state.provider, "provider_key": state.label},
            numbers={"since": iso(state.since), "reason": clip(state.reason or "-")},
            action=f"The provider refused it (revoked or out of credit?). Replace it: `keystead "
                   f"providers set-key {state.provider} --key {state.label.lstrip('#')}` "
                   f"(then it is back by itself), or put it back after fixing the account: "
                   f"`keystead providers enable-key {state.provider} "
                   f"{state.label.lstrip('#')}`.",
            severity="critical" if state.state == "disabled" else "warning"))
    return alerts


def breaker_open(snapshot: Snapshot, settings: PlainRule) -> list[Alert]:
    alerts: list[Alert] = []
    for deployment, until in sorted(snapshot.breakers.items()):
        alerts.append(Alert(
            rule="breaker_open", subject=f"deployment:{deployment}",
            title=f"circuit breaker open for deployment {deployment}",
            since=snapshot.now, where={"deployment": deployment},
            numbers={"open_until": iso(until)},
            action="The deployment failed repeatedly and gets no traffic until a probe "
                   "succeeds. `keystead routes` shows its route and the others; check the "
                   "provider's status and `keystead usage --since 1h --by provider`.",
            severity="warning"))
    return alerts


def check_failing(snapshot: Snapshot, settings: PlainRule) -> list[Alert]:
    alerts: list[Alert] = []
    for target, event in sorted(snapshot.checks.items()):
        if event.kind != CHECK_FAILED:
            continue
        status = event.detail.get("status")
        kind, _, name = target.partition(":")
        alerts.append(Alert(
            rule="check_failing", subject=target,
            title=f"synthetic check of {target} is failing",
            since=event.ts, where={kind if kind in ("provider", "route") else "target": name},
            numbers={"status": str(status) if isinstance(status, int) else "no answer",
                     "error": clip(event.detail.get("error") or "-"),
                     "failing_since": iso(event.ts)},
            action=f"Run it by hand: `keystead check --{kind} {name.split('#')[0]}`; "
                   f"`keystead routes` shows breakers and keys.",
            severity="critical"))
    return alerts
