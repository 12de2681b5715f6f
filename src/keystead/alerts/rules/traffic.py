"""Traffic rules over a short window of the ledger: error and 429 rates per provider and per
route, and a burst of 401s naming one key."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from keystead.alerts.model import Alert, Snapshot
from keystead.alerts.rules.common import key_where
from keystead.config.alerts import AuthFailuresRule, RateRule

__all__ = ["auth_failures", "error_rate", "rate_limited"]


def _rates(snapshot: Snapshot, rule: str, settings: RateRule, counts: Callable[[int], bool],
           what: str, action: str) -> list[Alert]:
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for outcome in snapshot.outcomes.get(rule, ()):
        for kind, name in (("provider", outcome.provider), ("route", outcome.route)):
            if name is None:
                continue
            total = totals[(kind, name)]
            total[0] += outcome.count
            if counts(outcome.status):
                total[1] += outcome.count
    alerts: list[Alert] = []
    for (kind, name), (requests, bad) in sorted(totals.items()):
        if requests < settings.min_requests or bad / requests < settings.ratio:
            continue
        alerts.append(Alert(
            rule=rule, subject=f"{kind}:{name}",
            title=f"{bad / requests:.0%} of requests to {kind} {name} got {what}",
            since=snapshot.now, where={kind: name},
            numbers={what: str(bad), "requests": str(requests),
                     "ratio": f"{bad / requests:.1%}", "threshold": f"{settings.ratio:.0%}",
                     "window": settings.window},
            action=action.format(kind=kind, name=name),
            severity="critical" if bad == requests else "warning"))
    return alerts


def error_rate(snapshot: Snapshot, settings: RateRule) -> list[Alert]:
    return _rates(snapshot, "error_rate", settings, lambda status: status >= 500, "5xx",
                  "Check the provider's status page and `keystead routes` (breakers, keys); "
                  "`keystead usage --since 1h --{kind} {name} --by model`. A route with "
                  "fallbacks keeps serving; a plain model name does not.")


def rate_limited(snapshot: Snapshot, settings: RateRule) -> list[Alert]:
    return _rates(snapshot, "rate_limited", settings, lambda status: status == 429, "429",
                  "Provider 429s: add a key to the provider's pool (`keystead providers "
                  "set-key <provider> --add`) or a deployment to the route; keystead's own "
                  "limits: `keystead usage "
                  "--since 1h --{kind} {name} --by key` shows which key hits its rpm/tpm.")


def auth_failures(snapshot: Snapshot, settings: AuthFailuresRule) -> list[Alert]:
    """Refused key texts that name a key the gateway knows (revoked, expired, rotated away,
    or a wrong secret): a leaked key being tried, or a client with a stale one."""
    alerts: list[Alert] = []
    for key_id, count in sorted(snapshot.auth_failures.items()):
        if count < settings.min_count:
            continue
        key = snapshot.key(key_id)
        status = key.status(snapshot.now) if key is not None else "unknown"
        alerts.append(Alert(
            rule="auth_failures", subject=f"key:{key_id}",
            title=f"{count} refused requests (401) naming key "
                  f"{key.name if key else key_id} ({status})",
            since=snapshot.now, where=key_where(key, key_id),
            numbers={"401s": str(count), "window": settings.window,
                     "threshold": str(settings.min_count), "key_status": status},
            action=f"Someone holds this key's text. If it may have leaked: `keystead incident "
                   f"{key_id}` and `keystead usage --key {key_id} --since 1d --by hour` for "
                   f"the sources. If a client kept an old key after a rotation, give it the "
                   f"current one.",
            severity="critical"))
    return alerts
