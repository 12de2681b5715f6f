"""The load generator: wrk with a Lua script that POSTs a chat request and prints JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHAT_BODY = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'

_SCRIPT = """
wrk.method = "POST"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"
%(auth)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"status_errors":%%d,"socket_errors":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"mean_us":%%.1f}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


@dataclass(frozen=True)
class LoadResult:
    connections: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    requests: int


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(value: str) -> str:
    """A Lua string literal for a header name or value (JSON in a header is fine); refuses
    control characters, which would split the header or the request."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"control character in a wrk header: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(url: str, *, connections: int, seconds: float, key: str | None, cpu: str | None,
            body: str = CHAT_BODY, threads: int = 1,
            headers: dict[str, str] | None = None, nice: int = 0) -> LoadResult:
    """`headers` are sent with every request, besides Content-Type and the bearer key;
    `nice` lowers wrk's priority (bench/cores.py: the load shares the server's cores)."""
    lines = [f'wrk.headers["Authorization"] = {_lua_string("Bearer " + key)}'] if key else []
    lines += [f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}"
              for name, value in (headers or {}).items()]
    auth = "\n".join(lines)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_SCRIPT % {"body": body, "auth": auth})
    duration = f"{max(1, round(seconds))}s"  # wrk takes whole seconds only
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", duration,
               "--timeout", "10s", "-s", script.name, url]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", cpu, *command]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(script.name).unlink()
    line = next(ln for ln in output.splitlines() if ln.startswith("WRKJSON "))
    data = json.loads(line[len("WRKJSON "):])
    return LoadResult(
        connections=connections, rps=round(data["requests"] / (data["duration_us"] / 1e6), 1),
        p50_ms=round(data["p50_us"] / 1000, 3), p90_ms=round(data["p90_us"] / 1000, 3),
        p99_ms=round(data["p99_us"] / 1000, 3), non_2xx=data["status_errors"],
        socket_errors=data["socket_errors"], requests=data["requests"])
