"""The Grafana dashboard and the Prometheus rules in docs/: valid, and every `keystead_*`
metric they name exists in a real scrape after traffic."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from keystead.keys.format import parse_key
from keystead.runtime import KEYS_VERSION
from keystead.state.records import Limits
from support import AppClient, run_in_app

DOCS = Path(__file__).resolve().parents[2] / "docs"
DASHBOARD = DOCS / "grafana" / "keystead-dashboard.json"
RULES = DOCS / "prometheus" / "keystead-alerts.yml"
NAME = re.compile(r"\bkeystead_[a-z0-9_]+")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
             "gauge": ("",), "info": ("_info",)}


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"]
               for target in panel.get("targets", [])]
    queries += [variable["definition"] for variable in dashboard["templating"]["list"]]
    return queries


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _balanced(expr: str) -> bool:
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"[^"]*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_the_rules_file_has_prometheus_rule_group_shape() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names))
    alerts = set()
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations",
                                 "keep_firing_for"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert isinstance(rule["expr"], str) and _balanced(rule["expr"]), rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"])
            alerts.add(rule["alert"])
    # What docs/monitoring.md promises.
    assert {"KeysteadHighErrorRate", "Keystead429Storm", "KeysteadBudget80Percent",
            "KeysteadBudgetExhausted", "KeysteadBreakerOpen", "KeysteadLedgerDrops",
            "KeysteadDown"} <= alerts


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("requests/s", "429", "p95", "first byte", "tokens/s", "spend per hour by team",
                  "by model", "budget used", "breakers", "provider keys", "ledger",
                  "synthetic check"):
        assert topic in titles, topic
    for query in _dashboard_queries():
        assert _balanced(query), query


def test_every_metric_the_dashboard_and_rules_name_exists_in_a_scrape(tmp_path: Path) -> None:
    used = {name for query in _dashboard_queries() + [r["expr"] for r in _rules()]
            for name in NAME.findall(query)}
    assert len(used) > 15
    exposed: set[str] = set()

    async def test(client: AppClient) -> None:
        rt = client.runtime
        text = await client.create_key("prod-search-api")
        await rt.store.update_key(parse_key(text).key_id,  # type: ignore[union-attr]
                                  limits=Limits(budget_usd=Decimal("5")))
        await rt.changed(KEYS_VERSION)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        for stream in (False, True):
            reply = await client.request("POST", "/v1/chat/completions",
                                         json_body={**body, "stream": stream}, key=text)
            assert reply.status == 200
        await client.request("POST", "/v1/chat/completions", json_body=body, key="sk-nope")
        from keystead.checks.run import CheckRunner  # the check gauges, after a run

        assert all(result.ok for result in await CheckRunner(rt).run())
        scraped = await client.request("GET", "/metrics")
        for family in text_string_to_metric_families(scraped.body.decode()):
            exposed.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
            exposed.update(sample.name for sample in family.samples)

    run_in_app(tmp_path, test)
    assert sorted(used - exposed) == []
