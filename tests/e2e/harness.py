"""End-to-end helpers: real `python -m keystead` processes on real sockets.

One gateway (session scope) serves every test that only sends requests; tests that need their
own server (SIGTERM, --workers) start a second one on the same config. Children run with the
test's interpreter and `PYTHONPATH=<repo>/src` prepended, so the tests work from a checkout and
against an installed package alike.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SRC = Path(__file__).resolve().parents[2] / "src"
_KEYSTEAD_VARS = ("KEYSTEAD_CONFIG", "KEYSTEAD_SERVER", "KEYSTEAD_ADMIN_TOKEN",
                  "KEYSTEAD_MASTER_KEY", "KEYSTEAD_MASTER_KEY_FILE", "KEYSTEAD_DATABASE_URL",
                  "KEYSTEAD_REDIS_URL")
MODELS = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]

# Every process a test started, killed at the end of the session if it is still running.
CHILDREN: list[subprocess.Popen[Any]] = []


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a keystead child: ours, minus keystead settings, plus src on the path."""
    env = {k: v for k, v in os.environ.items() if k not in _KEYSTEAD_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keystead_args(*args: str, config: Path | None = None) -> list[str]:
    prefix = ["--config", str(config)] if config is not None else []
    return [sys.executable, "-m", "keystead", *prefix, *args]


def run_cli(*args: str, config: Path | None = None, input: str | None = None,
            env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one `python -m keystead` command to completion."""
    result = subprocess.run(keystead_args(*args, config=config), input=input, text=True,
                            capture_output=True, env=child_env(env), cwd=cwd, timeout=timeout,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"keystead {' '.join(args)} exited {result.returncode}\n"
                             f"stdout: {result.stdout}\nstderr: {result.stderr}")
    return result


def spawn(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
          stdout: Any = subprocess.DEVNULL, stderr: Any = subprocess.DEVNULL,
          stdin: Any = subprocess.DEVNULL, text: bool = False) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(list(argv), env=child_env(env), cwd=cwd, stdout=stdout,
                            stderr=stderr, stdin=stdin, text=text)
    CHILDREN.append(proc)
    return proc


Started = list[tuple[dict[str, Any], "subprocess.Popen[str]"]]


def start_many(commands: Sequence[dict[str, Any]]) -> Started:
    """Start several CLI commands at once (each costs ~1.5 s of imports): dicts of run_cli args
    (`args`, `config`, `env`, `cwd`, `input`). Collect them with `finish_many`."""
    started: Started = []
    for command in commands:
        proc = spawn(keystead_args(*command["args"], config=command.get("config")),
                     env=command.get("env"), cwd=command.get("cwd"),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     stdin=subprocess.PIPE, text=True)
        started.append((command, proc))
    return started


def finish_many(started: Started, timeout: float = 60) -> list[subprocess.CompletedProcess[str]]:
    results = []
    for command, proc in started:
        out, err = proc.communicate(command.get("input"), timeout=timeout)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def run_many(commands: Sequence[dict[str, Any]], timeout: float = 60,
             ) -> list[subprocess.CompletedProcess[str]]:
    return finish_many(start_many(commands), timeout)


def http(method: str, url: str, *, body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10,
         ) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request with urllib; HTTP errors are returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def wait_ready(base_url: str, proc: subprocess.Popen[Any], log: Path,
               timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode} before it was ready:\n"
                                 + log.read_text(errors="replace"))
        try:
            status, _, _ = http("GET", base_url + "/readyz", timeout=1)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server not ready after {timeout}s:\n" + log.read_text(errors="replace"))


def start_server(config: Path, log: Path, *extra: str, port: int | None = None,
                 env: dict[str, str] | None = None, ready: bool = True,
                 ) -> tuple[subprocess.Popen[Any], str]:
    """`keystead serve` in the background, stderr to `log`; returns (process, base URL)."""
    port = port or free_port()
    with log.open("ab") as sink:
        proc = spawn(keystead_args("serve", "--port", str(port), *extra, config=config),
                     env=env, cwd=config.parent, stderr=sink)
    base_url = f"http://127.0.0.1:{port}"
    if ready:
        wait_ready(base_url, proc, log)
    return proc, base_url


def start_servers(config: Path, logs: Sequence[Path], *extra: str,
                  env: dict[str, str] | None = None, timeout: float = 60,
                  ) -> list[tuple[subprocess.Popen[Any], str]]:
    """Several `keystead serve` processes on one config, started at once (their imports overlap),
    then each waited for; returns [(process, base URL)] in the order of `logs`."""
    started = [start_server(config, log, *extra, env=env, ready=False) for log in logs]
    try:
        for (proc, base_url), log in zip(started, logs, strict=True):
            wait_ready(base_url, proc, log, timeout=timeout)
    except BaseException:
        for proc, _ in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        raise
    return started


def stop(proc: subprocess.Popen[Any], timeout: float = 30) -> int:
    """SIGTERM and wait; a process that does not stop in time is killed (and that fails)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"process {proc.pid} ignored SIGTERM for {timeout}s") from None


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def ledger_rows(db: Path, where: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    """Rows of the usage table, read straight from the SQLite file (the server keeps running)."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(f"SELECT * FROM usage WHERE {where}", params))
    finally:
        conn.close()


def wait_for_rows(db: Path, where: str, params: Sequence[Any], count: int,
                  timeout: float = 10) -> list[sqlite3.Row]:
    """Poll until the ledger holds `count` matching rows (it is written in batches)."""
    deadline = time.monotonic() + timeout
    rows: list[sqlite3.Row] = []
    while time.monotonic() < deadline:
        rows = ledger_rows(db, where, params)
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"ledger has {len(rows)} rows for {where} {params}, expected {count}")


@dataclass
class Gateway:
    dir: Path
    config: Path
    db: Path
    log: Path
    base_url: str
    proc: subprocess.Popen[Any]
    admin_token: str
    master_key: str
    keys: dict[str, str]  # name -> key text
    issued: list[str] = field(default_factory=list)  # every key text any test created

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def cli(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, config=self.config, cwd=self.dir, **kwargs)

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, payload = http(method, self.base_url + path, body=body,
                                  headers={"authorization": f"Bearer {self.admin_token}"})
        return status, (json.loads(payload) if payload else None)

    def create_key(self, name: str, **fields: Any) -> str:
        """A new key through the admin API (fast: no CLI process)."""
        status, created = self.admin("POST", "/admin/keys", {"name": name, **fields})
        assert status == 201, created
        self.issued.append(created["key"])
        return str(created["key"])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_until_key_works(gateway: Gateway, key: str, timeout: float = 5) -> None:
    """A key made by another process works once the server's store watcher reloaded the keys."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = http("GET", gateway.v1 + "/models",
                               headers={"authorization": f"Bearer {key}"})
        if status == 200:
            return
        assert time.monotonic() < deadline, f"key never worked: {body!r}"
        time.sleep(0.05)


def prepare_config(directory: Path, *, flush_interval_s: float = 0.05,
                   overrides: dict[str, Any] | None = None) -> Path:
    """`keystead init DIR`, then the mock provider with three models and a fast ledger flush.

    `overrides` maps config sections to values merged into them (one level deep), e.g.
    `{"database": {"url": ...}, "limits": {"lease_s": 2}}`."""
    run_cli("init", str(directory))
    config = directory / "keystead.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["providers"] = {"mock": {"type": "mock", "models": list(MODELS)}}
    raw["usage"]["flush_interval_s"] = flush_interval_s
    raw["server"]["shutdown_grace_s"] = 20
    for section, value in (overrides or {}).items():
        current = raw.get(section)
        if isinstance(value, dict) and isinstance(current, dict):
            raw[section] = {**current, **value}
        else:
            raw[section] = value
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config
