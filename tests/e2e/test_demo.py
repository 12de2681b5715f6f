"""`keystead demo` as a newcomer runs it: the printed key works, and the printed route shows
retries on its flaky deployment and answers a repeated question from its cache."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import openai
import pytest

from e2e.harness import free_port, keystead_args, run_cli, spawn, stop, wait_ready

pytestmark = pytest.mark.e2e


def test_the_demo_serves_its_key_and_its_route(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:
        proc = spawn(keystead_args("demo", "--port", str(port), "--dir", str(tmp_path / "d")),
                     stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "Press Ctrl-C" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        # The text is printed at startup, a moment before the socket listens.
        wait_ready(f"http://127.0.0.1:{port}", proc, log)
        printed = log.read_text()
        key = re.search(r"demo key\s+(ksk_\w+)", printed)
        token = re.search(r"admin token\s+(\S+)", printed)
        assert key and token and '"model": "support-default"' in printed
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key[1],
                               max_retries=0, timeout=10)
        assert client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}],
        ).choices[0].message.content
        attempts = []
        for i in range(12):  # a third of the flaky deployment's calls fail, and are retried
            raw = client.chat.completions.with_raw_response.create(
                model="support-default", messages=[{"role": "user", "content": f"Hi {i}!"}])
            assert raw.http_response.status_code == 200
            attempts.append(int(raw.headers.get("x-keystead-attempts", "1")))
        assert max(attempts) > 1
        again = client.chat.completions.with_raw_response.create(
            model="support-default", messages=[{"role": "user", "content": "Hi 0!"}])
        assert again.headers["x-keystead-cache"] == "hit"
        client.close()
        routes = run_cli("--server", f"http://127.0.0.1:{port}", "--admin-token", token[1],
                         "routes")
        assert "support-default" in routes.stdout and "mock-flaky/gpt-4o-mini" in routes.stdout
    finally:
        assert stop(proc) == 0, log.read_text()
