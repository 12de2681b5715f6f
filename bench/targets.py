"""The things being measured, each started the way a user would start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import CHAT_BODY
from bench.procs import Proc, free_port, wait_http


@dataclass
class Target:
    name: str
    url: str  # the chat completions URL to load
    key: str | None
    proc: Proc | None
    cold_start_s: float | None
    body: str = CHAT_BODY  # what each request sends
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request, beside
    # the bearer key (Portkey's gateway picks its provider and base URL from headers)


def _keystead(*args: str, cwd: Path, stdin: str | None = None) -> str:
    return subprocess.run([sys.executable, "-m", "keystead", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, input=stdin).stdout


def start_floor(upstream: str, *, cpu: str | None, client: str = "httpx",
                server: str = "uvicorn", interface: str = "rsgi") -> Target:
    """bench/floor.py: one bearer check and one HTTP client, nothing else; on uvicorn (raw
    ASGI) or on granian (`interface` rsgi or asgi, uvloop). `client`: httpx, aiohttp, h1
    (keystead's own, providers/h1.py) or pyreqwest."""
    key = "floor-bench-key"
    port = free_port()
    if server == "granian":
        name = f"floor-granian-{interface}-{client}"
        label = f"python floor (granian {interface}+{client})"
        extra = ["--server", "granian", "--interface", interface, "--client", client]
    else:
        name, label = f"floor-{client}", f"python floor (uvicorn+{client})"
        extra = ["--client", client]
    started = time.perf_counter()
    proc = Proc.start(name,
                      [sys.executable, str(Path(__file__).with_name("floor.py")),
                       "--port", str(port), "--upstream", upstream, "--key", key, *extra],
                      cpu=cpu)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        wait_http(url, method="POST", body=CHAT_BODY.encode(),
                  headers={"authorization": f"Bearer {key}"})
    except TimeoutError:
        proc.stop()
        raise RuntimeError(f"{label} did not answer 200 at {url}; see {proc.log}") from None
    return Target(label, url, key, proc, round(time.perf_counter() - started, 3))


# Routes for the routing targets: one alias over two deployments (weighted balancing, the
# retry machinery armed), and the same alias with the cache on (every request after the first
# is a hit: the gateway's own floor with no upstream call).
ROUTES = {
    "route": """routes:
  bench-route:
    deployments:
      - {provider: bench, model: gpt-4o-mini, weight: 3}
      - {provider: bench2, model: gpt-4o-mini, weight: 1}

""",
    "cache": """routes:
  bench-route:
    cache: {ttl: 1h}
    deployments:
      - {provider: bench, model: gpt-4o-mini}

""",
}


# The signals variants: Prometheus metrics are on by default; `nometrics` turns them off, `traced`
# adds OpenTelemetry tracing of every request (sampled 100 %) to the fake upstream's OTLP sink.
SIGNALS = {
    "nometrics": "metrics:\n  enabled: false\n\n",
    "traced": ("tracing:\n  enabled: true\n  endpoint: {upstream}/v1/traces\n"
               "  sample_ratio: 1.0\n\n"),
    "traced10": ("tracing:\n  enabled: true\n  endpoint: {upstream}/v1/traces\n"
                 "  sample_ratio: 0.1\n\n"),
}


def start_keystead(upstream: str, *, cpu: str | None, workers: int = 1,
                   name: str = "keystead", redis_url: str | None = None,
                   routes: str | None = None, probe_body: str | None = None,
                   signals: str = "") -> Target:
    """`keystead serve` with its default policy on, proxying to `upstream`.

    The policy a platform team would set: the key belongs to a team, and both carry a rate
    limit and a monthly budget (high enough never to refuse), so every request pays for the key
    check, scopes, two GCRA rates, two budget reservations (its prompt counted offline), the
    cost, the usage record and the log line. With `redis_url` the counters live in Redis.
    `signals` is YAML for the metrics and tracing sections (SIGNALS).
    """
    root = Path(tempfile.mkdtemp(prefix="keystead-bench-"))
    _keystead("init", str(root), cwd=root)
    config = root / "keystead.yaml"
    text = config.read_text()
    start = text.index("providers:")
    end = text.index("# Prices override")
    redis = (f"redis:\n  url: {redis_url}\n  prefix: \"kbench:{os.getpid()}:{time.time_ns()}:\"\n\n"
             if redis_url else "")
    config.write_text(text[:start] + f"""providers:
  bench:
    type: openai-compatible
    base_url: {upstream}/v1
    models: [gpt-4o-mini]
  bench2:
    type: openai-compatible
    base_url: {upstream}/v1
    models: [gpt-4o-mini-2]

{redis}{ROUTES[routes] if routes else ""}{signals.format(upstream=upstream)}""" + text[end:])
    policy = ["--rpm", "100000000", "--budget", "1000000000"]
    _keystead("teams", "create", "bench", *policy, cwd=root)
    created = json.loads(_keystead("keys", "create", "dev-bench-load", "--team", "bench",
                                   *policy, "--json", cwd=root))
    port = free_port()
    started = time.perf_counter()
    proc = Proc.start(name, [sys.executable, "-m", "keystead", "serve", "--port", str(port),
                             "--workers", str(workers)], cpu=cpu, cwd=str(root))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = CHAT_BODY.replace('"gpt-4o-mini"', '"bench-route"') if routes else CHAT_BODY
    wait_http(url, method="POST", body=(probe_body or body).encode(),
              headers={"authorization": f"Bearer {created['key']}"})
    return Target(name, url, created["key"], proc, round(time.perf_counter() - started, 3),
                  body)
