"""Property-based fuzzing of the admin API from its own OpenAPI document (schemathesis).

A real gateway (uvicorn, httptools) serves on loopback with the admin token; schemathesis
generates requests for every operation of /admin/openapi.json, valid ones (positive) and ones
that break the schema (negative), from a fixed seed and a bounded number of examples, and
sends them with the token. Asserted for every answer: no 5xx, no dropped connection, every 4xx
the OpenAI envelope with a code; schemathesis' own checks for the status codes, the response
schemas, the content types and 405s.

Nothing leaves the machine: a generated provider's base_url is pointed at a closed loopback
port and external secret references (aws-sm:, hcvault:, file:) become an unset env: variable.
Budget: under a minute on a 2-core machine (FUZZ_EXAMPLES examples per operation and mode).
To explore further by hand: FUZZ_EXAMPLES=100 FUZZ_SEED=7 pytest --timeout=1200 this file.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from keystead.server.app import create_app
from support import ADMIN_TOKEN, make_loaded

SEED = int(os.environ.get("FUZZ_SEED", "20261207"))  # another seed: explore further
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          content_type_conformance]
_OUTBOUND_REFS = ("aws-sm:", "hcvault:", "file:")
TARGET_KEY, TARGET_TEAM = "dev-fuzz-target-01", "fuzz"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """keystead on a free loopback port, in a thread of its own; yields its base URL."""
    loaded = make_loaded(tmp_path_factory.mktemp("fuzz"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(loaded), lifespan="on", log_level="warning",
                            http="httptools")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(1000):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert server.started, "the gateway did not start"
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        for path, body in (("/admin/teams", {"name": TARGET_TEAM}),
                           ("/admin/keys", {"name": TARGET_KEY, "team": TARGET_TEAM})):
            made = requests.post(base + path, json=body, headers=AUTH, timeout=30)
            assert made.status_code == 201, made.text
        yield base
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _local_only(body: dict[str, Any]) -> None:
    """Keep a generated provider off the network (see the module docstring)."""
    if isinstance(body.get("base_url"), str):
        body["base_url"] = "http://127.0.0.1:9/v1"  # discard port: refused at once
    if isinstance(body.get("api_key_ref"), str) and body["api_key_ref"].startswith(
            _OUTBOUND_REFS):
        body["api_key_ref"] = "env:KEYSTEAD_FUZZ_UNSET"
    refs = body.get("api_key_refs")
    if isinstance(refs, list):
        body["api_key_refs"] = ["env:KEYSTEAD_FUZZ_UNSET"
                                if isinstance(r, str) and r.startswith(_OUTBOUND_REFS) else r
                                for r in refs]


_made = iter(range(10**6))


def _steer(case: Any) -> None:
    """Point half the cases at things that exist, so that the values behind the naming rules
    (limits, budgets, durations, lists) reach the services and the store instead of stopping
    at `invalid_key_name` or `not_found`. Which half follows from the generated data, so a
    seed replays the same run."""
    params = case.path_parameters or {}
    for name, target in (("key", TARGET_KEY), ("name", TARGET_TEAM)):
        value = params.get(name)
        if isinstance(value, str) and len(value) % 2 == 0:
            params[name] = TARGET_TEAM if case.path.startswith("/admin/teams") else target
            if case.path.startswith("/admin/providers"):
                params[name] = "mock"
    body = case.body
    if not isinstance(body, dict):
        return
    _local_only(body)
    if case.method == "POST" and case.path == "/admin/keys" and isinstance(body.get("name"), str):
        body["name"] = f"dev-fuzz-bot-{next(_made):02d}"
        body.pop("env", None)
        if "team" in body:
            body["team"] = TARGET_TEAM
    if case.method == "POST" and case.path == "/admin/teams" and isinstance(body.get("name"),
                                                                             str):
        body["name"] = f"fuzz-{next(_made)}"
    if case.path in ("/admin/tokens", "/admin/incidents") and "key" in body:
        body["key"] = TARGET_KEY


def _envelope(response: requests.Response) -> None:
    document = response.json()
    error = document["error"]
    assert set(error) == {"message", "type", "param", "code"}, document
    assert isinstance(error["code"], str) and error["code"], document
    assert isinstance(error["message"], str) and error["message"], document


class Tally:
    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.dropped: list[str] = []
        self.unbreakable: list[str] = []


def fuzz(operation: Any, mode: GenerationMode, gateway: str, session: requests.Session,
         tally: Tally) -> Callable[[], None]:
    """A Hypothesis test of one operation in one generation mode, from the fixed seed."""
    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        _steer(case)
        try:
            response = case.call(base_url=gateway, session=session, headers=AUTH, timeout=30)
        except requests.ConnectionError as exc:
            tally.dropped.append(f"{case.method} {case.formatted_path}: {exc}")
            raise
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        if 400 <= response.status_code < 500:
            _envelope(response)
        if mode is GenerationMode.POSITIVE:
            case.validate_response(response, checks=CHECKS, headers=AUTH)

    return run


def test_the_admin_api_survives_its_own_schema_fuzzed(gateway: str) -> None:
    schema = schemathesis.openapi.from_url(f"{gateway}/admin/openapi.json")
    session = requests.Session()
    tally = Tally()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in GenerationMode:
            try:
                fuzz(operation, mode, gateway, session, tally)()
            except Unsatisfiable:
                # An operation with no parameters and no body has nothing to break.
                assert mode is GenerationMode.NEGATIVE, operation.label
                tally.unbreakable.append(operation.label)
    print(f"\nadmin fuzz: {sum(tally.statuses.values())} requests, statuses "
          f"{dict(sorted(tally.statuses.items()))}; nothing to break in {tally.unbreakable}")
    assert not tally.dropped
    assert 500 not in tally.statuses


def test_the_fuzz_suite_reaches_past_validation(gateway: str) -> None:
    """The bounds leave the largest allowed values usable: a key at every maximum is made."""
    reply = requests.post(f"{gateway}/admin/keys", headers=AUTH, timeout=30,
                          json={"name": "dev-fuzz-probe-01", "max_tokens": 2**31 - 1,
                                "limits": {"rpm": 10**12, "budget_usd": "999999999999.5"}})
    assert reply.status_code == 201, reply.text
