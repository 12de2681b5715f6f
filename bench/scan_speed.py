"""Time keystead scan against gitleaks and detect-secrets on a large tree and on git histories.

    python -m bench.scan_speed [--files 100000] [--runs 3] [--ds-files 2000] [--ds-commits 100]
                               [--synthetic-commits 5000]

Targets:
- a generated, deterministic, source-like tree of --files files (bench/scan_tree.py when it is
  there; otherwise the small generator below with the same signature), cached in bench/.cache/;
- keystead's own history: a clone of this checkout's `main` branch (all its commits);
- a generated history of --synthetic-commits commits (1 to 5 source-like files changed each,
  written with `git fast-import`), since keystead's own is only a few hundred commits.

Each tool runs --runs times per target, the tools alternated (k, g, d, k, g, d, ...) so the
machine's noise falls on all of them alike, after one read of the whole tree to warm the page
cache. Wall time and CPU time (user + system of the tool and every process it waited for) are
reported as the median of the runs, and scaled to per 10k files / per 1k commits.

detect-secrets is slow (minutes per 10k files): it runs on the first --ds-files files of the tree
(whole directories) and on the newest --ds-commits commits of each history, and its time is
scaled from that sample. Its history has no native mode: the timed run is bench.scan_tools'
harness (every introduced blob written out, one `detect-secrets scan --all-files`).

Output: a markdown table on stdout (and bench/results/scan_speed.md), JSON in
bench/results/scan_speed.json.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import scan_peers
from bench.scan_score import keystead_version
from bench.scan_tools import (
    detect_secrets_command,
    detect_secrets_history,
    gitleaks_command,
    keystead_command,
)

RESULTS = Path(__file__).parent / "results"
CACHE = Path(__file__).parent / ".cache"
REPO_ROOT = Path(__file__).resolve().parents[1]  # this checkout
SEED = 16


def _generator() -> tuple[str, Callable[[Path, int, float, int, int], tuple[int, int]]]:
    from bench.scan_tree import generate

    return "bench.scan_tree", generate


def tree(files: int) -> tuple[Path, dict[str, Any]]:
    """The generated tree, made once and kept in bench/.cache/ (same arguments, same bytes)."""
    name, generate = _generator()
    # The generator's source is in the name: a changed generator makes a new tree.
    source = hashlib.sha256(inspect.getsource(inspect.getmodule(generate) or generate).encode())
    root = CACHE / f"scan-tree-{files}-{SEED}-{source.hexdigest()[:10]}"
    done = CACHE / f"{root.name}.json"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        print(f"scan_speed: generating {files} files in {root} ({name})", file=sys.stderr)
        size, planted = generate(root, files, 3.0, SEED, 1000)
        done.write_text(json.dumps({"generator": name, "files": files, "bytes": size,
                                    "planted": planted}))
    return root, json.loads(done.read_text())


def sample_dirs(root: Path, files: int) -> list[str]:
    """Whole leaf directories, in sorted order, until they hold at least `files` files."""
    chosen, count = [], 0
    for directory in sorted(p for p in root.glob("*/*") if p.is_dir()):
        chosen.append(str(directory.relative_to(root)))
        count += sum(1 for _ in directory.iterdir())
        if count >= files:
            break
    return chosen


def _count_files(root: Path, dirs: Sequence[str]) -> int:
    return sum(1 for d in dirs for _ in (root / d).iterdir())


def clone_main(dest: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", "--single-branch", "--branch", "main",
                    "--no-checkout", str(REPO_ROOT), str(dest)], check=True)
    return dest


def synthetic_history(dest: Path, commits: int, seed: int = SEED) -> Path:
    """`commits` commits, each changing 1 to 5 of 2,000 source-like files, via fast-import."""
    rng = random.Random(seed)
    _, generate = _generator()
    with tempfile.TemporaryDirectory(prefix="keystead-bench-hist-src-") as tmp:
        generate(Path(tmp), 400, 3.0, seed, 50)  # bodies to draw lines from
        lines = [line for p in sorted(Path(tmp).rglob("*.*")) for line in
                 p.read_text().splitlines()]
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(dest)], check=True)
    stream: list[bytes] = []
    for n in range(commits):
        stream.append(f"commit refs/heads/main\ncommitter Bench <bench@example.invalid> "
                      f"{1_700_000_000 + n * 600} +0000\n".encode())
        message = f"change {n}".encode()
        stream.append(b"data %d\n%s\n" % (len(message), message))
        for _ in range(rng.randint(1, 5)):
            path = f"src/pkg{rng.randrange(40):02d}/mod{rng.randrange(50):02d}.py"
            start = rng.randrange(len(lines))
            body = ("\n".join(lines[start:start + rng.randint(20, 150)]) + "\n").encode()
            stream.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(body),
                                                                   body))
    subprocess.run(["git", "-C", str(dest), "fast-import", "--quiet"], input=b"".join(stream),
                   check=True)
    return dest


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its waited-for children) of one run."""
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    before_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run()
    wall = time.perf_counter() - started
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    after_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(a, f) - getattr(b, f) for a, b in ((after_self, before_self),
                                                         (after_kids, before_kids))
              for f in ("ru_utime", "ru_stime"))
    return wall, cpu


def command(argv: list[str], cwd: Path) -> Callable[[], object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITLEAKS_CONFIG")}

    def run() -> None:
        done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{argv[:3]} exited {done.returncode}: {done.stderr[-500:]!r}")
    return run


def warm(root: Path) -> None:
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as handle:
                while handle.read(1 << 20):
                    pass


def measure(jobs: dict[str, Callable[[], object]], runs: int) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in jobs}
    for _ in range(runs):
        for name, job in jobs.items():
            samples[name].append(timed(job))
            print(f"scan_speed:   {name}: {samples[name][-1][0]:.2f} s wall, "
                  f"{samples[name][-1][1]:.2f} s CPU", file=sys.stderr)
    return {name: {"wall_s": [round(w, 3) for w, _ in got], "cpu_s": [round(c, 3) for _, c in got],
                   "wall_median_s": round(statistics.median(w for w, _ in got), 3),
                   "cpu_median_s": round(statistics.median(c for _, c in got), 3)}
            for name, got in samples.items()}


def _scaled(result: dict[str, Any], size: int, per: int) -> dict[str, Any]:
    return {**result, "size": size,
            "wall_per": round(result["wall_median_s"] * per / size, 3),
            "cpu_per": round(result["cpu_median_s"] * per / size, 3)}


def bench_tree(root: Path, files: int, ds_files: int, runs: int,
               tools: Sequence[str]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="keystead-bench-speed-") as tmp:
        return _bench_tree(root, files, ds_files, runs, tools, Path(tmp) / "gitleaks.json")


def _bench_tree(root: Path, files: int, ds_files: int, runs: int, tools: Sequence[str],
                report: Path) -> list[dict[str, Any]]:
    dirs = sample_dirs(root, ds_files)
    jobs = {"keystead": command(keystead_command(root, history=False), root),
            "gitleaks": command(gitleaks_command(root, report, history=False), root),
            "detect-secrets": command([*detect_secrets_command()[:-1], *dirs], root)}
    sizes = {"keystead": files, "gitleaks": files, "detect-secrets": _count_files(root, dirs)}
    print(f"scan_speed: tree {root} ({files} files; detect-secrets on {sizes['detect-secrets']})",
          file=sys.stderr)
    warm(root)
    got = measure({t: jobs[t] for t in tools}, runs)
    return [{"target": f"tree, {files} files", "tool": t, "unit": "10k files",
             **_scaled(got[t], sizes[t], 10_000)} for t in tools]


def bench_history(name: str, repo: Path, ds_commits: int, runs: int,
                  tools: Sequence[str]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="keystead-bench-speed-") as tmp:
        return _bench_history(name, repo, ds_commits, runs, tools, Path(tmp) / "gitleaks.json")


def _bench_history(name: str, repo: Path, ds_commits: int, runs: int, tools: Sequence[str],
                   report: Path) -> list[dict[str, Any]]:
    commits = int(subprocess.run(["git", "-C", str(repo), "rev-list", "--all", "--count"],
                                 capture_output=True, text=True, check=True).stdout)
    capped = min(commits, ds_commits)
    jobs: dict[str, Callable[[], object]] = {
        "keystead": command(keystead_command(repo, history=True), repo),
        "gitleaks": command(gitleaks_command(repo, report, history=True), repo),
        "detect-secrets": lambda: detect_secrets_history(repo, limit=capped)}
    sizes = {"keystead": commits, "gitleaks": commits, "detect-secrets": capped}
    print(f"scan_speed: history {name} ({commits} commits; detect-secrets on the newest "
          f"{capped})", file=sys.stderr)
    warm(repo / ".git")
    got = measure({t: jobs[t] for t in tools}, runs)
    return [{"target": f"history, {name}", "tool": t, "unit": "1k commits",
             **_scaled(got[t], sizes[t], 1_000)} for t in tools]


def render(rows: Sequence[dict[str, Any]]) -> str:
    header = ["target", "tool", "scanned", "wall (median)", "CPU (median)", "wall per unit",
              "CPU per unit", "unit", "runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(f"| {r['target']} | {r['tool']} | {r['size']} | {r['wall_median_s']:.2f} s "
                     f"| {r['cpu_median_s']:.2f} s | {r['wall_per']:.2f} s | {r['cpu_per']:.2f} s "
                     f"| {r['unit']} | {len(r['wall_s'])} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scan_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ds-files", type=int, default=2_000)
    parser.add_argument("--ds-commits", type=int, default=100)
    parser.add_argument("--synthetic-commits", type=int, default=5_000)
    parser.add_argument("--tools", default="keystead,gitleaks,detect-secrets")
    parser.add_argument("--only", default="tree,main,synthetic",
                        help="targets: tree, main (keystead's history), synthetic")
    parser.add_argument("--json", type=Path, default=RESULTS / "scan_speed.json")
    args = parser.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    targets = set(args.only.split(","))
    versions = {**scan_peers.versions(), "keystead": keystead_version()}
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    if "tree" in targets:
        root, info["tree"] = tree(args.files)
        rows += bench_tree(root, args.files, args.ds_files, args.runs, tools)
    with tempfile.TemporaryDirectory(prefix="keystead-bench-speed-git-") as tmp:
        if "main" in targets:
            repo = clone_main(Path(tmp) / "keystead")
            info["main_head"] = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                                               capture_output=True, text=True).stdout.strip()
            rows += bench_history("keystead main", repo, args.ds_commits, args.runs, tools)
        if "synthetic" in targets:
            repo = synthetic_history(Path(tmp) / "synthetic", args.synthetic_commits)
            rows += bench_history(f"synthetic {args.synthetic_commits} commits", repo,
                                  args.ds_commits, args.runs, tools)
    table = render(rows)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.with_suffix(".md").write_text(table + "\n")
    args.json.write_text(json.dumps({"versions": versions, "cpus": os.cpu_count(),
                                     "targets": info, "rows": rows}, indent=2) + "\n")
    print(f"\nJSON: {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
