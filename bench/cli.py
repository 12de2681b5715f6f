"""`python -m bench cli`: how long a `keystead` command takes from start to exit.

Each command runs as a user runs it, a fresh `python -m keystead ...` process, `--runs` times
after `--warmup` runs that are not counted, on its own project (`keystead init`, a team, keys):
embedded (the project's SQLite store), then with `--server` against a `keystead serve` started
on that project. Wall time is measured around the process; CPU time (user + system) is the
operating system's account of the finished child, steadier than wall time on a shared machine.
A table on stdout (median, min and max in ms), JSON in bench/results/cli.json.

    python -m bench cli [--runs 9] [--warmup 2] [--src DIR] [--only embedded,server,floor]

`--src DIR` measures another checkout's source (its `src/`) with this virtualenv: the before
figures of docs/performance.md are `--src` of the commit before the change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Proc, free_port, wait_http

RESULTS = Path(__file__).parent / "results"

# What a command costs before it does anything: the interpreter and the big imports, each in a
# fresh process (`python -c "import X"`), so the table says where a command's time goes.
FLOORS = {
    "python (nothing imported)": "pass",
    "click": "import click",
    "urllib.request + json": "import urllib.request, json",
    "asyncio": "import asyncio",
    "pydantic (BaseModel machinery)": "from pydantic import BaseModel, Field",
    "keystead.config.model (pydantic + the config's models)": "import keystead.config.model",
    "sqlalchemy (Core alone)": "import sqlalchemy",
    "sqlalchemy + its asyncio extension (pulls the ORM)": "import sqlalchemy.ext.asyncio",
    "keystead.state.sql_store (the store)": "import keystead.state.sql_store",
    "aiohttp": "import aiohttp",
    "keystead.runtime (the whole serving runtime)": "import keystead.runtime",
}


@dataclass
class Timing:
    wall_ms: list[float]
    cpu_ms: list[float]

    def row(self, name: str, mode: str) -> dict[str, object]:
        return {"command": name, "mode": mode,
                "median_ms": _ms(statistics.median(self.wall_ms)),
                "min_ms": _ms(min(self.wall_ms)), "max_ms": _ms(max(self.wall_ms)),
                "cpu_median_ms": _ms(statistics.median(self.cpu_ms)),
                "runs": len(self.wall_ms)}


def _ms(value: float) -> float:
    return round(value, 1)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(args: Callable[[int], list[str]], *, runs: int, warmup: int,
                 env: dict[str, str], cwd: Path, stdin: str = "") -> Timing:
    """Run `args(i)` (a fresh argument list for run i) warmup + runs times; time the runs."""
    wall: list[float] = []
    cpu: list[float] = []
    for i in range(warmup + runs):
        cpu_before = _children_cpu()
        started = time.perf_counter()
        done = subprocess.run(args(i), cwd=cwd, env=env, input=stdin, capture_output=True,
                              text=True, check=False)
        elapsed = time.perf_counter() - started
        spent = _children_cpu() - cpu_before
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args(i))} exited {done.returncode}: "
                               f"{done.stderr.strip()[-400:]}")
        if i >= warmup:
            wall.append(elapsed * 1000)
            cpu.append(spent * 1000)
    return Timing(wall, cpu)


def _keystead(*args: str) -> list[str]:
    return [sys.executable, "-m", "keystead", *args]


class Project:
    """A directory made by `keystead init`, with a team and keys to act on."""

    def __init__(self, env: dict[str, str], spare_keys: int):
        self.dir = Path(tempfile.mkdtemp(prefix="keystead-bench-cli-"))
        self.env = env
        self._run("init", str(self.dir))
        dotenv = dict(line.split("=", 1) for line in (self.dir / ".env").read_text().splitlines()
                      if "=" in line and not line.startswith("#"))
        self.admin_token = dotenv["KEYSTEAD_ADMIN_TOKEN"]
        self._run("teams", "create", "payments", "--rpm", "600")
        self._run("keys", "create", "prod-pay-api", "--team", "payments", "--models",
                  "gpt-4o-mini")
        # Keys to revoke, one per timed run, so each run does the whole revocation.
        self.spare = [f"prod-spare-k{i:03d}" for i in range(spare_keys)]
        for name in self.spare:
            self._run("keys", "create", name)

    def _run(self, *args: str) -> None:
        subprocess.run(_keystead(*args), cwd=self.dir, env=self.env, check=True,
                       capture_output=True)


def commands(project: Project, tag: str) -> dict[str, Callable[[int], list[str]]]:
    """Each listed command, as a function of the run number (create and revoke need a new key
    each time; `tag` keeps the embedded and --server runs apart)."""
    spare = project.spare
    half = len(spare) // 2
    offset = 0 if tag == "embedded" else half
    return {
        "keys list": lambda i: ["keys", "list"],
        "keys show": lambda i: ["keys", "show", "prod-pay-api"],
        "keys create": lambda i: ["keys", "create", f"prod-{tag}-new{i:03d}", "--json"],
        "keys revoke": lambda i: ["keys", "revoke", spare[offset + i]],
        "teams list": lambda i: ["teams", "list"],
        "teams show": lambda i: ["teams", "show", "payments"],
        "usage": lambda i: ["usage", "--by", "model"],
        "events": lambda i: ["events", "--limit", "20"],
        "incident": lambda i: ["incident", "prod-pay-api", "--json"],
    }


def _fixed(argv: list[str]) -> Callable[[int], list[str]]:
    return lambda _i: argv


def _cli(argv: Callable[[int], list[str]], *before: str) -> Callable[[int], list[str]]:
    return lambda i: _keystead(*before, *argv(i))


def run(args: argparse.Namespace) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSTEAD_")}
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    only = set(args.only.split(",")) if args.only else {"floor", "embedded", "server"}
    per_mode = args.runs + args.warmup
    project = Project(env, spare_keys=2 * per_mode)
    rows: list[dict[str, object]] = []

    def record(name: str, mode: str, argv: Callable[[int], list[str]],
               extra_env: dict[str, str] | None = None) -> None:
        timing = time_command(argv, runs=args.runs, warmup=args.warmup,
                              env={**env, **(extra_env or {})}, cwd=project.dir)
        rows.append(timing.row(name, mode))
        print(_line(rows[-1]), file=sys.stderr)

    if "floor" in only:
        for name, code in FLOORS.items():
            record(name, "import", _fixed([sys.executable, "-c", code]))
        record("keystead --help", "-", _fixed(_keystead("--help")))
    if "embedded" in only:
        for name, argv in commands(project, "embedded").items():
            record(name, "embedded", _cli(argv))
    if "server" in only:
        port = free_port()
        server = Proc.start("cli-bench-serve", _keystead("serve", "--port", str(port)),
                            cpu=None, env=env, cwd=str(project.dir))
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + "/admin/keys",
                      headers={"authorization": f"Bearer {project.admin_token}"})
            for name, argv in commands(project, "server").items():
                record(name, "--server", _cli(argv, "--server", url),
                       {"KEYSTEAD_ADMIN_TOKEN": project.admin_token})
        finally:
            server.stop()
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform(),
                          "load_average": os.getloadavg()},
              "src": args.src, "runs": args.runs, "warmup": args.warmup, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(report, indent=2))
    print(table(rows))
    print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the end; "
          "wall times grow with it, CPU times much less)")
    return 0


COLUMNS = ("command", "mode", "median_ms", "min_ms", "max_ms", "cpu_median_ms")


def _line(row: dict[str, object]) -> str:
    return "  ".join(f"{c}={row[c]}" for c in COLUMNS)


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="timed runs per command")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--src", help="another checkout's src/ to measure (PYTHONPATH)")
    parser.add_argument("--only", help="comma-separated: floor, embedded, server")
    return run(parser.parse_args(argv))
