"""OpenTelemetry is loaded only when tracing is on: a serving process with tracing off (the
default) runs a request without importing any of it. A fresh interpreter each (this test
process has imported everything already). The key is made through the service, not the admin
API: FastAPI (the admin API, built on its first call) imports opentelemetry-api itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

_PROBE = """
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from keystead.control.keys import KeyService
from support import make_loaded, running_app

tmp = Path(sys.argv[2])
raw = json.loads(sys.argv[3])

async def main():
    async with running_app(make_loaded(tmp, raw=raw)) as client:
        key = (await KeyService(client.runtime).create("dev-imports-app")).text
        reply = await client.request("POST", "/v1/chat/completions", key=key, json_body={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status == 200, reply.body

asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""


def _modules(tmp_path: Path, raw: dict[str, object]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _PROBE, str(TESTS), str(tmp_path),
                           json.dumps(raw)], capture_output=True, text=True, timeout=90,
                          check=False)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_tracing_off_imports_no_opentelemetry(tmp_path: Path) -> None:
    modules = _modules(tmp_path, {})
    assert [m for m in modules if m.startswith(("opentelemetry", "keystead.tracing.setup",
                                                "keystead.tracing.request_span",
                                                "google.protobuf"))] == []


def test_tracing_on_loads_the_sdk_and_the_exporter(tmp_path: Path) -> None:
    modules = _modules(tmp_path, {"tracing": {
        "enabled": True, "endpoint": "http://127.0.0.1:9/v1/traces", "timeout_s": 0.5}})
    assert "opentelemetry.sdk.trace" in modules
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in modules
