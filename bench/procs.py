"""Processes of a benchmark run: start pinned to a CPU, wait until they answer, measure, stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, *, method: str = "GET", body: bytes | None = None,
              headers: dict[str, str] | None = None, timeout: float = 30.0) -> float:
    """Poll until `url` answers 2xx; returns the seconds it took."""
    started = time.perf_counter()
    deadline = started + timeout
    while True:
        request = urllib.request.Request(url, data=body, method=method,
                                         headers={"content-type": "application/json",
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if 200 <= response.status < 300:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.01)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, command: list[str], *, cpu: str | None,
              env: dict[str, str] | None = None, cwd: str | None = None) -> Proc:
        if cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", cpu, *command]
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"keystead-bench-{name}-{os.getpid()}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                 env={**os.environ, **(env or {})}, cwd=cwd,
                                 start_new_session=True)
        return cls(name, popen, log)

    def rss_mb(self) -> float:
        """Resident memory of the process and its children (workers), in MB."""
        total = 0
        for pid in [self.popen.pid, *_children(self.popen.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                continue
        return round(total / 1024, 1)

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) of the process and its children so far."""
        ticks = 0
        for pid in [self.popen.pid, *_children(self.popen.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except FileNotFoundError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found.append(int(child))
            found.extend(_children(int(child)))
    except FileNotFoundError:
        pass
    return found
