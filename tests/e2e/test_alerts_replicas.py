"""Exactly one alert per event across three gateways (issue 14, item 3).

Three `keystead serve` processes on one PostgreSQL database and one Redis prefix, each running
the alert engine every second. A revoked key's text is sent to all three (a leaked key being
tried): every replica sees the burst of 401s in the shared ledger, and the test's webhook, which
verifies the HMAC signature, receives exactly one firing message; once the burst is out of the
window, exactly one resolved message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from backends import backend_config
from e2e.harness import http, prepare_config, read_env_file, start_servers, stop
from keystead.config.alerts import RULE_NAMES
from webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret-0123456789abcdef"
WINDOW_S = 6


def signed(headers: Any, body: bytes) -> bool:
    """The HMAC signature checked as docs/monitoring.md tells a receiver to, replays refused."""
    parts = dict(p.split("=", 1) for p in headers["x-keystead-signature"].split(","))
    expected = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with webhook_receiver(check=signed) as receiver:
        yield receiver


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_three_replicas_send_one_firing_and_one_resolved_message(tmp_path, hook: Receiver) -> None:
    off = {name: {"enabled": False} for name in RULE_NAMES if name != "auth_failures"}
    with backend_config("scaleout") as backend:
        config = prepare_config(tmp_path, overrides={**backend, "alerts": {
            "evaluate_every": "1s", "cooldown": "1h",
            "rules": {**off, "auth_failures": {"window": f"{WINDOW_S}s", "min_count": 6}},
            "channels": {"oncall": {"type": "webhook", "webhook_url": "${ALERT_HOOK_URL}",
                                    "secret": "${ALERT_HOOK_SECRET}"}}}})
        token = read_env_file(tmp_path / ".env")["KEYSTEAD_ADMIN_TOKEN"]
        admin = {"authorization": f"Bearer {token}"}
        logs = [tmp_path / f"replica{n}.log" for n in (1, 2, 3)]
        started = start_servers(config, logs, env={"ALERT_HOOK_URL": hook.url,
                                                   "ALERT_HOOK_SECRET": SECRET})
        try:
            bases = [base for _proc, base in started]
            status, _, body = http("POST", bases[0] + "/admin/keys", body={
                "name": "prod-web-chat"}, headers=admin)
            assert status == 201, body
            created = json.loads(body)
            status, _, body = http("POST", bases[0] + f"/admin/keys/{created['id']}/revoke",
                                   body={"reason": "leaked"}, headers=admin)
            assert status == 200, body
            auth = {"authorization": f"Bearer {created['key']}"}
            for base in bases:  # every replica refuses it within a second
                wait_for(lambda base=base: http("GET", base + "/v1/models", headers=auth)[0]
                         == 401, 10, "the revocation")
            chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(4):  # 12 refused requests, 4 through each replica
                for base in bases:
                    status, _, _ = http("POST", base + "/v1/chat/completions", body=chat,
                                        headers=auth)
                    assert status == 401
            wait_for(lambda: hook.received, 30, "the firing message")
            # every replica evaluates several times while the burst is in the window
            wait_for(lambda: any(m["kind"] == "resolved" for m in hook.received),
                     WINDOW_S + 30, "the resolved message")
            time.sleep(3)  # time for a duplicate to arrive, were there one
            kinds = [(m["kind"], m["rule"], m["subject"]) for m in hook.received]
            assert kinds == [("firing", "auth_failures", f"key:{created['id']}"),
                             ("resolved", "auth_failures", f"key:{created['id']}")]
            firing = hook.received[0]
            assert firing["where"]["key"] == "prod-web-chat"
            assert int(firing["numbers"]["401s"]) >= 6
            assert f"keystead incident {created['id']}" in firing["action"]
            assert created["key"] not in json.dumps(hook.received)
            status, _, body = http("GET", bases[2] + "/admin/alerts", headers=admin)
            [row] = [r for r in json.loads(body) if r["rule"] == "auth_failures"]
            assert row["state"] == "resolved"
            status, _, body = http("GET", bases[1] + "/admin/events?kind=alert.firing",
                                   headers=admin)
            [event] = json.loads(body)
            assert event["detail"]["delivery"] == {"oncall": "sent"}
        finally:
            for proc, _base in started:
                stop(proc)
        for log in logs:
            text = log.read_text()
            assert hook.url not in text and SECRET not in text
