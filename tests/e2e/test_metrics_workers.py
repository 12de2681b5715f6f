"""`keystead serve --workers 2`: one scrape of /metrics sees every worker's requests, and the
workers' metric files live in a private directory that is gone when the server stops."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from e2e.harness import http, prepare_config, run_cli, start_server, stop

TOKEN = "metrics-e2e-token-0123456789abcdef"
REQUESTS = 24


def _children_dirs(pid: int) -> set[str]:
    """PROMETHEUS_MULTIPROC_DIR as the server's workers got it (Linux /proc)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            for item in environ:
                if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                    found.add(item.split(b"=", 1)[1].decode())
    return found


def _worker_pids(pid: int) -> set[int]:
    return {int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()}


def _requests_total(text: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == "keystead_requests_total"
               and sample.labels.get("status") == "200")


def test_one_scrape_counts_every_workers_requests(tmp_path: Path) -> None:
    if not Path("/proc/self/task").exists():
        pytest.skip("needs Linux /proc to find the workers")
    config = prepare_config(tmp_path, overrides={"metrics": {"token": "${METRICS_TOKEN}"}})
    with (tmp_path / ".env").open("a") as env:
        env.write(f"\nMETRICS_TOKEN={TOKEN}\n")
    key = json.loads(run_cli("keys", "create", "dev-metrics-app", "--json",
                             config=config).stdout)["key"]
    log = tmp_path / "server.log"
    proc, base_url = start_server(config, log, "--workers", "2")
    try:
        directories = _children_dirs(proc.pid)
        assert len(directories) == 1, directories
        directory = Path(directories.pop())
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for i in range(REQUESTS):
            # A new client (and connection) each time: the kernel spreads them over the workers.
            with openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0) as sdk:
                sdk.chat.completions.create(model="gpt-4o-mini",
                                            messages=[{"role": "user", "content": f"m{i}"}])
        status, _, _ = http("GET", base_url + "/metrics")
        assert status == 401
        # Each worker moves its counts into its files within a second; several scrapes, each
        # answered by whichever worker accepts it, all see the same total.
        seen = []
        for _ in range(6):
            status, headers, body = http("GET", base_url + "/metrics",
                                         headers={"authorization": f"Bearer {TOKEN}"})
            assert status == 200 and headers["content-type"].startswith("text/plain")
            seen.append(_requests_total(body.decode()))
            if seen[-1] == REQUESTS and len(seen) >= 3:
                break
            time.sleep(0.5)
        assert seen[-1] == REQUESTS, seen
        files = os.listdir(directory)
        workers = {int(name[len("gauge_livesum_"):-3]) for name in files
                   if name.startswith("gauge_livesum_")}
        assert len(workers) == 2 and workers <= _worker_pids(proc.pid)
        # A worker that dies is replaced; its live gauges stop counting, its counts stay.
        dead = min(workers)
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (directory / f"gauge_livesum_{dead}.db").exists():
            assert time.monotonic() < deadline, "the dead worker's gauges were never removed"
            time.sleep(0.1)
        status, _, body = http("GET", base_url + "/metrics",
                               headers={"authorization": f"Bearer {TOKEN}"})
        assert status == 200 and _requests_total(body.decode()) == REQUESTS
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()
    assert not directory.exists()
