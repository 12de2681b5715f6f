"""GET /metrics through the real app: what one request adds, the token, off is a 404."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from metrics_support import parse, scrape, total

from keystead.config.load import ConfigError
from keystead.keys.format import parse_key
from support import AppClient, make_loaded, run_in_app

CHAT = "/v1/chat/completions"


def ask(text: str = "hi", model: str = "gpt-4o-mini", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_one_request_is_counted_with_its_labels_tokens_cost_and_latency(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-search-api")
        key_id = parse_key(key).key_id  # type: ignore[union-attr]
        reply = await client.request("POST", CHAT, json_body=ask(), key=key)
        assert reply.status == 200
        samples = await scrape(client)
        requests = [labels for (name, labels), value in samples.items()
                    if name == "keystead_requests_total" and value == 1]
        assert len(requests) == 1
        labels = dict(requests[0])
        assert labels["endpoint"] == "chat.completions" and labels["status"] == "200"
        assert labels["model"] == "gpt-4o-mini" and labels["provider"] == "mock"
        assert labels["env"] == "prod" and labels["route"] == ""
        assert labels["key"] == key_id and labels["team"] == ""
        usage = reply.json()["usage"]
        assert total(samples, "keystead_prompt_tokens_total") == usage["prompt_tokens"]
        assert total(samples, "keystead_completion_tokens_total") == usage["completion_tokens"]
        assert total(samples, "keystead_cost_usd_total") > 0
        assert total(samples, "keystead_request_duration_seconds_count",
                     endpoint="chat.completions") == 1
        assert total(samples, "keystead_in_flight_requests") == 0
        assert total(samples, "keystead_dependency_up", dependency="database") == 1
        assert total(samples, "keystead_build_info") == 1
        assert total(samples, "keystead_ledger_queue_depth") >= 0

    run_in_app(tmp_path, test)


def test_a_stream_records_its_time_to_first_byte(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-test-app")
        reply = await client.request("POST", CHAT, json_body=ask(stream=True), key=key)
        assert reply.status == 200
        samples = await scrape(client)
        assert total(samples, "keystead_time_to_first_byte_seconds_count") == 1

    run_in_app(tmp_path, test)


def test_an_unknown_key_is_counted_without_a_key_label(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        reply = await client.request("POST", CHAT, json_body=ask(), key="sk-wrong-" + "x" * 40)
        assert reply.status == 401
        samples = await scrape(client)
        assert total(samples, "keystead_requests_total", status="401", key="") == 1
        assert "sk-wrong" not in repr(samples)

    run_in_app(tmp_path, test)


def test_the_token_guards_the_endpoint(tmp_path: Path) -> None:
    token = "metrics-token-0123456789abcdef"

    async def test(client: AppClient) -> None:
        for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"},
                        {"authorization": "Basic " + token}, {"authorization": token},
                        {"authorization": f"Bearer {token}x"}):
            reply = await client.request("GET", "/metrics", headers=headers)
            assert reply.status == 401, headers
            assert reply.json()["error"]["type"] == "authentication_error"
            assert token not in reply.body.decode()
        reply = await client.request("GET", "/metrics",
                                     headers={"authorization": f"bearer {token}"})
        assert reply.status == 200
        parse(reply.body.decode())
        reply = await client.request("POST", "/metrics",
                                     headers={"authorization": f"Bearer {token}"})
        assert reply.status == 405

    run_in_app(tmp_path, test, raw={"metrics": {"token": "${METRICS_TOKEN}"}},
               env={"METRICS_TOKEN": token})


def test_disabled_metrics_are_a_404_and_load_no_prometheus_client(tmp_path: Path) -> None:
    loaded_before = "prometheus_client" in sys.modules

    async def test(client: AppClient) -> None:
        reply = await client.request("GET", "/metrics")
        assert reply.status == 404
        assert reply.json()["error"]["code"] == "unknown_url"
        key = await client.create_key("dev-test-app")
        assert (await client.request("POST", CHAT, json_body=ask(), key=key)).status == 200
        assert type(client.runtime.metrics).__name__ == "NoMetrics"

    run_in_app(tmp_path, test, raw={"metrics": {"enabled": False}})
    if not loaded_before:
        assert "prometheus_client" not in sys.modules


def test_a_reload_changes_the_token(tmp_path: Path) -> None:
    old, new = "metrics-token-old-0123456789", "metrics-token-new-0123456789"

    async def test(client: AppClient) -> None:
        bearer = {"authorization": f"Bearer {old}"}
        assert (await client.request("GET", "/metrics", headers=bearer)).status == 200
        fresh = make_loaded(tmp_path, raw={"metrics": {"token": "${METRICS_TOKEN}"}},
                            env={"METRICS_TOKEN": new})
        await client.runtime.apply_config(fresh, "digest2")
        assert (await client.request("GET", "/metrics", headers=bearer)).status == 401
        reply = await client.request("GET", "/metrics",
                                     headers={"authorization": f"Bearer {new}"})
        assert reply.status == 200
        assert 'keystead_config_info{digest="digest2"} 1.0' in reply.body.decode()

    run_in_app(tmp_path, test, raw={"metrics": {"token": "${METRICS_TOKEN}"}},
               env={"METRICS_TOKEN": old})


def test_a_bad_token_is_refused_at_load_without_being_quoted(tmp_path: Path) -> None:
    for bad in ("short", "has spaces in the token 0123456789", "é" * 20, "x" * 600):
        with pytest.raises(ConfigError) as caught:
            make_loaded(tmp_path, raw={"metrics": {"token": "${METRICS_TOKEN}"}},
                        env={"METRICS_TOKEN": bad})
        assert bad not in str(caught.value)
        assert "metrics" in str(caught.value)


def test_a_retried_request_counts_its_upstream_error_and_retry(tmp_path: Path) -> None:
    fast = {"attempts": 3, "base_ms": 1, "cap_ms": 5, "max_retry_after_s": 2,
            "attempt_timeout_s": 2}

    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-test-app")
        reply = await client.request("POST", CHAT, key=key, json_body=ask(
            "[[mock:faults=503,ok]] hi", model="support"))
        assert reply.status == 200, reply.body
        samples = await scrape(client)
        assert total(samples, "keystead_upstream_errors_total", provider="mock",
                     route="support", **{"class": "5xx"}) == 1
        assert total(samples, "keystead_retries_total", route="support") == 1
        assert total(samples, "keystead_requests_total", route="support", model="support",
                     status="200") == 0  # the model label is the served model
        assert total(samples, "keystead_requests_total", route="support",
                     model="gpt-4o-mini", status="200") == 1

    run_in_app(tmp_path, test, raw={"routes": {"support": {"retry": fast, "deployments": [
        {"provider": "mock", "model": "gpt-4o-mini"}]}}})
