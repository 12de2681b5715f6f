"""Two costs of a real `keystead serve` outside the request path: start-up and a broken stream.

    python -m bench.serve_costs [--runs 9] [--src PATH]

start-up: time from exec to the first 200 from /readyz (polled every 2 ms), median of `--runs`
starts on a store that already exists (the first start, which creates and migrates it, is
not counted). broken stream: the server's RSS (from /proc) after a warm-up request that has its
usage, then after the first stream the mock cuts short (`[[mock:disconnect_after=K]]`), whose
usage keystead must estimate itself. keystead's bytecode is cached (the first start writes it),
as in an installed package, even where PYTHONDONTWRITEBYTECODE is set.

`--src` measures another checkout's keystead (the before figures) with this script.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

SRC = Path(__file__).resolve().parents[1] / "src"


def _env(src: Path, pycache: Path) -> dict[str, str]:
    """keystead from `src`, with its bytecode cached (as an installed package has it: pip
    compiles on install) in `pycache`, whatever PYTHONDONTWRITEBYTECODE says here."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KEYSTEAD_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(src)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def _post(url: str, body: Any, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"authorization": f"Bearer {token}",
                                              "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (ConnectionError, urllib.error.URLError, OSError) as error:  # a cut stream
        return 0, str(error).encode()


def _prepare(directory: Path, env: dict[str, str]) -> Path:
    subprocess.run([sys.executable, "-m", "keystead", "init", str(directory)], env=env,
                   check=True, capture_output=True)
    config = directory / "keystead.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["providers"] = {"mock": {"type": "mock", "models": ["gpt-4o-mini", "gpt-4o"]}}
    raw["usage"]["flush_interval_s"] = 0.05
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def _start(config: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    """A server; returns it, its URL and the seconds from exec to the first 200 on /readyz."""
    port = _free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "keystead", "--config", str(config), "serve",
                             "--port", str(port)], env=env, cwd=config.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if _get(url + "/readyz") == 200:
                return proc, url, time.perf_counter() - started
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode}")
        if time.perf_counter() - started > 30:
            raise RuntimeError("serve not ready after 30 s")
        time.sleep(0.002)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _broken_stream(config: Path, env: dict[str, str]) -> tuple[float, float, float]:
    proc, url, _ = _start(config, env)
    try:
        admin = {k: v for k, v in (line.split("=", 1) for line in
                                   (config.parent / ".env").read_text().splitlines()
                                   if "=" in line and not line.startswith("#"))}
        status, created = _post(url + "/admin/keys", {"name": "dev-bench-rss"},
                                admin["KEYSTEAD_ADMIN_TOKEN"].strip())
        assert status == 201, created
        key = json.loads(created)["key"]
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}
        for _ in range(3):
            status, body = _post(url + "/v1/chat/completions", chat, key)
            assert status == 200, body
        time.sleep(0.3)
        idle = _rss_mb(proc.pid)
        cut = {**chat, "stream": True, "messages": [
            {"role": "user", "content": "Tell me a long story [[mock:disconnect_after=5]]"}]}
        _post(url + "/v1/chat/completions", cut, key)
        time.sleep(0.5)  # the usage estimate and the ledger write happen after the cut
        after = _rss_mb(proc.pid)
        _post(url + "/v1/chat/completions", cut, key)
        time.sleep(0.5)
        return idle, after, _rss_mb(proc.pid)
    finally:
        _stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--src", type=Path, default=SRC)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        env = _env(args.src.resolve(), Path(directory) / "pycache")
        config = _prepare(Path(directory), env)
        proc, _, first = _start(config, env)  # creates and migrates the store
        _stop(proc)
        times = []
        for _ in range(args.runs):
            proc, _, seconds = _start(config, env)
            _stop(proc)
            times.append(seconds)
        print(f"start-up (exec to first 200 on /readyz): median {statistics.median(times):.3f} s "
              f"of {args.runs} (min {min(times):.3f}, max {max(times):.3f}; first start with "
              f"a new store {first:.3f} s)")
        idle, after, second = _broken_stream(config, env)
        print(f"RSS: {idle:.1f} MB warm, {after:.1f} MB after the first broken stream "
              f"(+{after - idle:.1f}), {second:.1f} MB after a second one")


if __name__ == "__main__":
    main()
