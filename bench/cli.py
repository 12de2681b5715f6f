"""`python -m bench cli`: how long a `keystead` command takes from start to exit.

Each command runs as a user runs it, a fresh `python -m keystead ...` process, `--runs` times
after `--warmup` runs that are not counted, on its own project (`keystead init`, a team, keys):
embedded (the project's SQLite store), then with `--server` against a `keystead serve` started
on that project. Wall time is measured around the process; CPU time (user + system) is the
operating system's account of the finished child, steadier than wall time on a shared machine.
A table on stdout (median, min and max in ms), JSON in bench/results/cli.json.

    python -m bench cli [--runs 9] [--warmup 2] [--vs DIR] [--only floor,embedded,server]

`--vs DIR` also runs another checkout's source (DIR is its `src/`, put first on PYTHONPATH,
with this virtualenv), alternating with this one run by run so that a machine whose load drifts
slows both alike; the table gains its figures and the ratio. The before figures of
docs/performance.md are `--vs` a checkout of the commit before the change. The server for the
--server rows is always this checkout's.
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
THIS = "this"
OTHER = "vs"

# (run number, build) -> the arguments of one run.
Argv = Callable[[int, str], list[str]]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(argv: Argv, builds: dict[str, dict[str, str]], *, runs: int, warmup: int,
                 cwd: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Run `argv` warmup + runs times for each build, the builds in turn; per build the wall
    and CPU milliseconds of the timed runs."""
    times: dict[str, tuple[list[float], list[float]]] = {b: ([], []) for b in builds}
    for i in range(warmup + runs):
        for build, env in builds.items():
            args = argv(i, build)
            cpu_before = _children_cpu()
            started = time.perf_counter()
            done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                                  check=False)
            elapsed = time.perf_counter() - started
            spent = _children_cpu() - cpu_before
            if done.returncode != 0:
                raise RuntimeError(f"{build}: {' '.join(args)} exited {done.returncode}: "
                                   f"{done.stderr.strip()[-400:]}")
            if i >= warmup:
                times[build][0].append(elapsed * 1000)
                times[build][1].append(spent * 1000)
    return times


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


def commands(project: Project, mode: str, builds: list[str],
             per_build: int) -> dict[str, Argv]:
    """Each listed command. Create and revoke need a key of their own each run: the names
    depend on the mode, the build and the run number."""
    first = {(m, b): (i * len(builds) + j) * per_build
             for i, m in enumerate(("embedded", "server")) for j, b in enumerate(builds)}

    def spare(i: int, build: str) -> str:
        return project.spare[first[(mode, build)] + i]

    return {
        "keys list": lambda i, b: ["keys", "list"],
        "keys show": lambda i, b: ["keys", "show", "prod-pay-api"],
        "keys create": lambda i, b: ["keys", "create", f"prod-{mode}{b}-new{i:03d}", "--json"],
        "keys revoke": lambda i, b: ["keys", "revoke", spare(i, b)],
        "teams list": lambda i, b: ["teams", "list"],
        "teams show": lambda i, b: ["teams", "show", "payments"],
        "usage": lambda i, b: ["usage", "--by", "model"],
        "events": lambda i, b: ["events", "--limit", "20"],
        "incident": lambda i, b: ["incident", "prod-pay-api", "--json"],
    }


def _row(name: str, mode: str, times: dict[str, tuple[list[float], list[float]]]
         ) -> dict[str, object]:
    wall, cpu = times[THIS]
    row: dict[str, object] = {
        "command": name, "mode": mode, "median_ms": _ms(statistics.median(wall)),
        "min_ms": _ms(min(wall)), "max_ms": _ms(max(wall)),
        "cpu_median_ms": _ms(statistics.median(cpu)), "runs": len(wall)}
    if OTHER in times:
        other_wall, other_cpu = times[OTHER]
        row.update({"vs_median_ms": _ms(statistics.median(other_wall)),
                    "vs_cpu_median_ms": _ms(statistics.median(other_cpu)),
                    "ratio": round(statistics.median(wall) / statistics.median(other_wall), 2)})
    return row


def _ms(value: float) -> float:
    return round(value, 1)


def _fixed(argv: list[str]) -> Argv:
    return lambda _i, _b: argv


def _cli(argv: Argv, *before: str) -> Argv:
    return lambda i, b: _keystead(*before, *argv(i, b))


def run(args: argparse.Namespace) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSTEAD_")}
    builds = {THIS: env}
    if args.vs:
        builds[OTHER] = {**env, "PYTHONPATH": str(Path(args.vs).resolve())}
    only = set(args.only.split(",")) if args.only else {"floor", "embedded", "server"}
    per_build = args.runs + args.warmup
    project = Project(env, spare_keys=2 * len(builds) * per_build)
    rows: list[dict[str, object]] = []

    def record(name: str, mode: str, argv: Argv, extra: dict[str, str] | None = None) -> None:
        envs = {build: {**build_env, **(extra or {})} for build, build_env in builds.items()}
        times = time_command(argv, envs, runs=args.runs, warmup=args.warmup, cwd=project.dir)
        rows.append(_row(name, mode, times))
        print(_line(rows[-1]), file=sys.stderr)

    if "floor" in only:
        for name, code in FLOORS.items():
            record(name, "import", _fixed([sys.executable, "-c", code]))
        record("keystead --help", "-", _fixed(_keystead("--help")))
    if "embedded" in only:
        for name, argv in commands(project, "embedded", list(builds), per_build).items():
            record(name, "embedded", _cli(argv))
    if "server" in only:
        port = free_port()
        server = Proc.start("cli-bench-serve", _keystead("serve", "--port", str(port)),
                            cpu=None, env=env, cwd=str(project.dir))
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + "/admin/keys",
                      headers={"authorization": f"Bearer {project.admin_token}"})
            for name, argv in commands(project, "server", list(builds), per_build).items():
                record(name, "--server", _cli(argv, "--server", url),
                       {"KEYSTEAD_ADMIN_TOKEN": project.admin_token})
        finally:
            server.stop()
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform(),
                          "load_average_at_end": os.getloadavg()},
              "vs": args.vs, "runs": args.runs, "warmup": args.warmup, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(report, indent=2))
    print(table(rows, vs=bool(args.vs)))
    print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the end: wall "
          "times grow with it, CPU times much less)")
    return 0


COLUMNS = ("command", "mode", "median_ms", "min_ms", "max_ms", "cpu_median_ms")
VS_COLUMNS = ("vs_median_ms", "vs_cpu_median_ms", "ratio")


def _line(row: dict[str, object]) -> str:
    return "  ".join(f"{c}={row[c]}" for c in (*COLUMNS, *VS_COLUMNS) if c in row)


def table(rows: list[dict[str, object]], *, vs: bool = False) -> str:
    columns = (*COLUMNS, *VS_COLUMNS) if vs else COLUMNS
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "-")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="timed runs per command")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--vs", metavar="DIR", help="another checkout's src/ to compare with")
    parser.add_argument("--only", help="comma-separated: floor, embedded, server")
    return run(parser.parse_args(argv))
