"""The gateway as an operator runs it: usage reports, SIGTERM, revocation, secrets, workers,
and configurations that must not start."""

from __future__ import annotations

import csv
import io
import json
import secrets
import subprocess
import threading
import time
import uuid
from decimal import Decimal
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from e2e.harness import (
    Gateway,
    finish_many,
    free_port,
    http,
    keystead_args,
    ledger_rows,
    run_many,
    spawn,
    start_many,
    start_server,
    stop,
    wait_for_rows,
)

pytestmark = pytest.mark.e2e


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=20)


def chat_status(gateway: Gateway, key: str) -> tuple[int, dict[str, Any]]:
    """GET /v1/models with `key`: the cheapest authenticated call."""
    status, _, body = http("GET", gateway.v1 + "/models",
                           headers={"authorization": f"Bearer {key}"})
    return status, json.loads(body)


# --- (a) usage is recorded and reported --------------------------------------------------------


def test_usage_is_recorded_and_reported_embedded_and_remote(gateway: Gateway) -> None:
    name = "dev-usage-report"
    status, team = gateway.admin("POST", "/admin/teams", {"name": "usage"})
    assert status == 201, team
    key = gateway.create_key(name, team="usage")
    prompt = completion = 0
    cost = Decimal(0)
    with sdk(gateway, key) as client:
        for tokens in (3, 4, 5):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"usage {tokens} [[mock:tokens={tokens}]]"}])
            usage = raw.parse().usage
            prompt += usage.prompt_tokens
            completion += usage.completion_tokens
            cost += Decimal(raw.headers["x-keystead-cost-usd"])
        raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                         input=["one", "two words"])
        prompt += raw.parse().usage.prompt_tokens
        cost += Decimal(raw.headers["x-keystead-cost-usd"])
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "[[mock:status=429]]"}])
    assert completion == 12 and cost > 0
    wait_for_rows(gateway.db, "key_name = ?", [name], 5)

    embedded, remote = run_many([
        {"args": ["usage", "--by", "key", "--format", "json"], "config": gateway.config,
         "cwd": gateway.dir},
        {"args": ["--server", gateway.base_url, "--admin-token", gateway.admin_token, "usage",
                  "--format", "csv"], "cwd": gateway.dir},
    ])
    assert embedded.returncode == 0, embedded.stderr
    assert remote.returncode == 0, remote.stderr
    by_key = {row["key"]: row for row in json.loads(embedded.stdout)}
    csv_rows = {row["key"]: row for row in csv.DictReader(io.StringIO(remote.stdout))}
    for row in (by_key[name], csv_rows[name]):
        assert int(row["requests"]) == 5
        assert int(row["errors"]) == 1
        assert int(row["prompt_tokens"]) == prompt
        assert int(row["completion_tokens"]) == completion
        assert Decimal(row["cost_usd"]) == cost
    # Both views read the same ledger, so every group agrees (other tests' keys included).
    # Requests without a valid key are grouped under no name: null in JSON, empty in CSV.
    assert {name or "" for name in by_key} == set(csv_rows)


# --- (b) SIGTERM loses no record ---------------------------------------------------------------


def test_sigterm_with_requests_in_flight_loses_no_record(gateway: Gateway) -> None:
    # A second server on the same store, whose mock streams slowly (30 ms between chunks), so a
    # client can tell that its request is in flight: it has the headers, not yet the end.
    raw = yaml.safe_load(gateway.config.read_text())
    raw["providers"]["mock"]["mock"] = {"chunk_delay_ms": 30}
    config = gateway.dir / "slow-stream.yaml"
    config.write_text(yaml.safe_dump(raw))
    log = gateway.dir / "sigterm-server.log"
    proc, base_url = start_server(config, log)
    port = int(base_url.rsplit(":", 1)[1])
    run = uuid.uuid4().hex[:8]
    count = 50

    def body(stream: bool) -> bytes:
        # Non-streamed: held 400 ms by the mock. Streamed: 100 ms, then 12 chunks 30 ms apart.
        text = ("drain me [[mock:latency=100]] [[mock:tokens=12]]" if stream
                else "drain me [[mock:latency=400]] [[mock:tokens=12]]")
        return json.dumps({"model": "gpt-4o-mini", "stream": stream,
                           "messages": [{"role": "user", "content": text}]}).encode()

    in_flight = threading.Semaphore(0)
    answered: dict[str, int] = {}
    failed: dict[str, str] = {}
    lock = threading.Lock()

    def client(i: int) -> None:
        stream = i % 2 == 0
        request_id = f"sigterm-{run}-{i:02d}"
        conn = HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", "/v1/chat/completions", body=body(stream), headers={
                "authorization": f"Bearer {gateway.keys['app']}",
                "content-type": "application/json", "x-request-id": request_id})
            if not stream:
                in_flight.release()
            response = conn.getresponse()
            if stream:
                in_flight.release()
            payload = response.read()
            if stream:
                assert payload.endswith(b"data: [DONE]\n\n"), payload[-200:]
            with lock:
                answered[request_id] = response.status
        except (OSError, AssertionError) as exc:
            with lock:
                failed[request_id] = repr(exc)
            in_flight.release()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 15
    for _ in range(count):
        assert in_flight.acquire(timeout=max(0.0, deadline - time.monotonic())), "not in flight"
    assert not failed, failed
    started = time.monotonic()
    code = stop(proc)  # every streamed request is mid-stream now
    shutdown_s = time.monotonic() - started
    for thread in threads:
        thread.join(timeout=30)
    text = log.read_text()
    assert code == 0, text
    assert "Waiting for connections to close" in text  # requests were in flight at SIGTERM

    # The invariant: one ledger row for every request a client saw answered.
    assert answered, f"no request was answered: {failed}"
    rows = ledger_rows(gateway.db, "request_id LIKE ?", [f"sigterm-{run}-%"])
    assert sorted(r["request_id"] for r in rows) == sorted(answered)
    assert set(answered.values()) == {200}, answered
    assert all(r["status"] == 200 and r["completion_tokens"] == 12 for r in rows)
    assert {bool(r["stream"]) for r in rows} == {True, False}
    # In practice nothing is refused: every request had reached the server and was drained.
    assert not failed, failed
    assert len(answered) == count
    assert f"usage ledger flushed ({count} records written)" in text
    assert shutdown_s < 10


# --- (c) revocation ----------------------------------------------------------------------------


def test_revocation_by_another_process_takes_effect_within_the_poll(gateway: Gateway) -> None:
    local = gateway.create_key("dev-revoke-local")
    remote = gateway.create_key("dev-revoke-remote")
    assert chat_status(gateway, local)[0] == 200
    assert chat_status(gateway, remote)[0] == 200

    # Embedded: a separate process writes the store; the server notices the version bump.
    gateway.cli("keys", "revoke", "dev-revoke-local", "--reason", "e2e test")
    revoked_at = time.monotonic()
    while True:
        status, body = chat_status(gateway, local)
        elapsed = time.monotonic() - revoked_at
        if status == 401:
            break
        assert elapsed < 1.5, "the revoked key still works"
        time.sleep(0.02)
    assert body["error"]["code"] == "key_revoked"
    assert "dev-revoke-local" in body["error"]["message"]

    # Through the admin API: the serving process revokes it itself, so at once.
    result = gateway.cli("--server", gateway.base_url, "--admin-token", gateway.admin_token,
                         "keys", "revoke", "dev-revoke-remote")
    assert result.stdout.startswith("revoked ")
    status, body = chat_status(gateway, remote)
    assert status == 401
    assert body["error"]["code"] == "key_revoked"
    # Other keys are untouched.
    assert chat_status(gateway, gateway.keys["app"])[0] == 200


# --- (d) secrets never leak --------------------------------------------------------------------


def _wait_for_model(gateway: Gateway, model: str, present: bool = True) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _, models = chat_status(gateway, gateway.keys["app"])
        if (model in {m["id"] for m in models["data"]}) == present:
            return
        time.sleep(0.05)
    raise AssertionError(f"model {model} {'never appeared' if present else 'still listed'}")


def _wait_for_port(port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, "mock upstream exited"
        try:
            status, _, _ = http("GET", f"http://127.0.0.1:{port}/v1/models", timeout=1)
            if status == 401:  # up, and it wants its key
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("mock upstream did not start")


def test_planted_secrets_appear_nowhere(gateway: Gateway, tmp_path: Path) -> None:
    planted = "sk-planted-" + secrets.token_hex(20)
    wrong = "sk-wrong-" + secrets.token_hex(20)
    port = free_port()
    with (tmp_path / "upstream.log").open("wb") as sink:
        upstream = spawn(keystead_args("mock-upstream", "--port", str(port), "--api-key", planted),
                         stderr=sink)
    try:
        # Added while the upstream starts: adding does not call it.
        added = gateway.cli("providers", "add", "planted", "--type", "openai-compatible",
                            "--base-url", f"http://127.0.0.1:{port}/v1",
                            "--models", "planted-model", "--api-key-stdin",
                            input=planted + "\n")
        assert "key: vault" in added.stdout
        # Everything an operator can look at on the command line, run while requests go on.
        listings = start_many([{"args": args, "config": gateway.config, "cwd": gateway.dir}
                               for args in (["keys", "list"],
                                            ["keys", "show", "dev-e2e-restricted", "--json"],
                                            ["providers", "list", "--format", "json"])])
        # A provider with the wrong key: the client must see a gateway-side failure, not a 401.
        status, _ = gateway.admin("POST", "/admin/providers", {
            "name": "wrongkey", "type": "openai-compatible", "models": ["wrong-model"],
            "base_url": f"http://127.0.0.1:{port}/v1", "api_key": wrong})
        assert status == 201
        _wait_for_port(port, upstream)
        _wait_for_model(gateway, "planted-model")

        with sdk(gateway, gateway.keys["app"]) as client:
            reply = client.chat.completions.create(
                model="planted-model", messages=[{"role": "user", "content": "injected?"}])
            assert reply.choices[0].message.content.startswith("This is a mock reply to: injected")
            streamed = "".join(
                c.choices[0].delta.content or "" for c in client.chat.completions.create(
                    model="planted-model", stream=True,
                    messages=[{"role": "user", "content": "stream [[mock:tokens=3]]"}])
                if c.choices)
            assert streamed == "This is a"
            vectors = client.embeddings.create(model="planted-model", input="vector")
            assert len(vectors.data[0].embedding) == 1536
            with pytest.raises(openai.InternalServerError) as caught:
                client.chat.completions.create(
                    model="wrong-model", messages=[{"role": "user", "content": "hi"}])
            assert caught.value.status_code == 502
            assert caught.value.response.json()["error"]["code"] == "upstream_auth_failed"
            refused = caught.value.response.content

        status, tested = gateway.admin("POST", "/admin/providers/planted/test")
        assert status == 200 and tested["ok"] and tested["status"] == 200

        outputs = finish_many(listings)
        texts = {}
        for result in outputs:
            assert result.returncode == 0, result.stderr
            texts[" ".join(result.args[3:])] = (result.stdout + result.stderr).encode()
        providers = json.loads(outputs[2].stdout)
        assert {p["name"]: p["api_key"] for p in providers}["planted"] == "vault"
        for path in ("/admin/keys", "/admin/keys/dev-e2e-app", "/admin/providers",
                     "/admin/status", "/admin/usage?by=provider", "/admin/openapi.json"):
            status, _, body = http("GET", gateway.base_url + path,
                                   headers={"authorization": f"Bearer {gateway.admin_token}"})
            assert status == 200, path
            texts[path] = body
        texts["providers test"] = json.dumps(tested).encode()
        texts["upstream auth error"] = refused
        texts["server log"] = gateway.log.read_bytes()
        files = [p for p in gateway.dir.rglob("*") if p.is_file()]
        assert {"keystead.db", "keystead.db-wal", "server.log"} <= {p.name for p in files}
        for path in files:
            texts[str(path)] = path.read_bytes()

        secrets_to_find = {"planted provider key": planted, "wrong provider key": wrong,
                           **{f"keystead key {k[:12]}": k for k in gateway.issued}}
        assert len(gateway.issued) >= 2
        leaks = [(what, where) for what, secret in secrets_to_find.items()
                 for where, text in texts.items() if secret.encode() in text]
        assert leaks == []
        # The scan would have found them: the secrets are real and the sources are not empty.
        assert b"dev-e2e-app" in texts["/admin/keys"]
        assert b'"planted"' in texts["/admin/providers"]
    finally:
        for name in ("planted", "wrongkey"):
            gateway.admin("DELETE", f"/admin/providers/{name}")
        stop(upstream)
        _wait_for_model(gateway, "planted-model", present=False)


# --- (e) several workers -----------------------------------------------------------------------


def test_two_workers_start_and_serve(gateway: Gateway) -> None:
    log = gateway.dir / "workers-server.log"
    try:
        proc, base_url = start_server(gateway.config, log, "--workers", "2")
    except AssertionError:
        text = log.read_text(errors="replace")
        if "bind" in text or "address already in use" in text.lower():
            pytest.skip("cannot bind for --workers 2")
        raise
    try:
        for i in range(8):
            status, headers, _ = http(
                "POST", base_url + "/v1/chat/completions",
                body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"w{i}"}]},
                headers={"authorization": f"Bearer {gateway.keys['app']}",
                         "x-request-id": f"workers-{i}"})
            assert status == 200
            assert headers["x-request-id"] == f"workers-{i}"
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert text.count("Started server process") == 2
    assert text.count("usage ledger flushed") == 2
    assert len(ledger_rows(gateway.db, "request_id LIKE 'workers-%'")) == 8


# --- (f) configurations that must not start ----------------------------------------------------


def test_bad_configs_refuse_to_start(tmp_path: Path) -> None:
    # (The CLI tests cover more broken configs in-process; here the real `serve` process.)
    cases = {
        "bad": ("vault: {master_key: '${KEYSTEAD_MASTER_KEY}'}\nservr:\n  port: 9000\n"
                "providers:\n  x: {type: nope, base_url: 'http://localhost:1/v1'}\n",
                "KEYSTEAD_MASTER_KEY=" + "A" * 43 + "=\n"),
        # What `keystead init` wrote, after the .env lost its master key.
        "nokey": ("vault: {master_key: '${KEYSTEAD_MASTER_KEY}'}\n"
                  "providers:\n  mock: {type: mock}\n", "KEYSTEAD_ADMIN_TOKEN=abc\n"),
    }
    commands = []
    for name, (config, dotenv) in cases.items():
        directory = tmp_path / name
        directory.mkdir()
        (directory / "keystead.yaml").write_text(config)
        (directory / ".env").write_text(dotenv)
        commands.append({"args": ["serve", "--port", str(free_port())],
                         "config": directory / "keystead.yaml", "cwd": directory})
    bad, nokey = run_many(commands)

    assert bad.returncode == 2, bad.stderr
    assert "invalid configuration" in bad.stderr
    assert "servr: unknown setting" in bad.stderr  # every broken field is named at once
    assert "providers.x.type: Input should be 'openai'" in bad.stderr
    assert nokey.returncode == 2, nokey.stderr
    assert "vault.master_key" in nokey.stderr
    assert "KEYSTEAD_MASTER_KEY is not set" in nokey.stderr
    for result in (bad, nokey):
        assert result.stderr.startswith("error: ")
        assert "Traceback" not in result.stderr
        assert "Started server process" not in result.stderr
