"""docs/monitoring.md's walk "from zero to a Grafana board and a Slack channel", run against a
real gateway: the section's own YAML, the token-guarded scrape, `keystead alerts test` reaching a
Slack-compatible receiver, `keystead check`, and the checks the gateway ran itself on /metrics."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from e2e.harness import http, prepare_config, run_cli, start_server, stop
from e2e.test_docs_examples import examples
from webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.e2e

TOKEN = "walk-metrics-token-0123456789abcdef"


@pytest.fixture
def slack() -> Iterator[Receiver]:
    with webhook_receiver("/services/T000/B000/XXXX") as receiver:
        yield receiver


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_monitoring_walk_works_on_a_real_gateway(tmp_path, slack: Receiver) -> None:
    (example,) = examples("monitoring.md", "monitoring")
    walk = yaml.safe_load(textwrap.dedent(example))
    assert set(walk) == {"metrics", "alerts", "checks", "tracing"}
    config = prepare_config(tmp_path, overrides=walk)
    env = {"METRICS_TOKEN": TOKEN, "ALERTS_SLACK_URL": slack.url}
    proc, base = start_server(config, tmp_path / "gateway.log", env=env)
    try:
        status, _, _ = http("GET", base + "/metrics")
        assert status == 401  # the token guards it
        # The gateway checks every provider key and route at start (checks.every), and the
        # scrape shows the result.
        deadline = time.monotonic() + 30
        while True:
            status, headers, body = http("GET", base + "/metrics",
                                         headers={"authorization": f"Bearer {TOKEN}"})
            assert status == 200 and headers["content-type"].startswith("text/plain")
            up = {dict(labels)["target"]: value
                  for (name, labels), value in _samples(body.decode()).items()
                  if name == "keystead_check_up"}
            if up:
                break
            assert time.monotonic() < deadline, "the gateway's checks never reached /metrics"
            time.sleep(0.2)
        assert up == {"provider:mock": 1.0}

        tested = run_cli("alerts", "test", config=config, env=env, cwd=tmp_path)
        assert "oncall" in tested.stdout
        [message] = slack.received
        assert "keystead" in message["text"].lower() and "test" in message["text"].lower()
        assert slack.url not in tested.stdout + tested.stderr  # the URL is a secret

        checked = run_cli("check", config=config, env=env, cwd=tmp_path)
        assert "provider:mock" in checked.stdout and "ok" in checked.stdout
        listed = run_cli("alerts", "list", config=config, env=env, cwd=tmp_path)
        assert "auth_failures" in listed.stdout
    finally:
        stop(proc)
