"""Run keystead scan, gitleaks and detect-secrets on a tree or a git history; map what each one
reports to Hit(where, path, line, rule): the path relative to the tree's root or inside the
repository, the line 1-based.

Path conventions, normalised here:
- keystead (`python -m keystead scan --format json .`, cwd = the root): `path` relative, `line`
  1-based; with `--git REPO`, the path inside the repository, once per (key, path), at the commit
  that introduced it.
- gitleaks (`gitleaks dir .` / `gitleaks git REPO`, JSON report): `File` relative to the source
  given (absolute if the source was), `StartLine` 1-based (checked on 8.26.0: a key on a file's
  first line has StartLine 1); in git mode it scans `git log -p -U0 --all`, i.e. added lines.
- detect-secrets (`detect-secrets scan --all-files .`, cwd = the root): `results` keyed by the
  file name relative to the cwd, `line_number` 1-based. It has no history mode (1.5.0 scans a
  tree, or the files git tracks now), so history is handled like keystead's: every blob a commit
  added or changed (`git log --all -m --raw`), each (path, blob) written once to a temp tree under
  its own directory and scanned in one run; a secret is kept once per path, at the first commit
  that brought it (keyed by detect-secrets' own hashed_secret).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bench import scan_peers

TOOLS = ("keystead", "gitleaks", "detect-secrets")
_NULL_SHA = "0" * 40


@dataclass(frozen=True, order=True)
class Hit:
    where: str  # "files" | "history"
    path: str
    line: int
    rule: str


def relative(path: str, root: Path) -> str:
    """A tool's path as a POSIX path relative to `root` (the scanned tree or repository)."""
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute():
        pure = PurePosixPath(os.path.relpath(pure, root.resolve()))
    parts = [p for p in pure.parts if p != "."]
    return str(PurePosixPath(*parts)) if parts else ""


def _env() -> dict[str, str]:
    # Upstream default rules only: no config or ignore file picked up from the environment.
    return {k: v for k, v in os.environ.items()
            if k not in ("GITLEAKS_CONFIG", "GITLEAKS_CONFIG_TOML")}


def _run(command: list[str], cwd: Path, ok: tuple[int, ...] = (0, 1)) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=_env())
    if done.returncode not in ok:
        raise RuntimeError(f"{command[0]} {' '.join(command[1:3])} exited {done.returncode}: "
                           f"{done.stderr.strip()[-1500:]}")
    return done.stdout


# --- commands (also timed by bench/scan_speed.py) -------------------------------------------

def keystead_command(target: Path, *, history: bool) -> list[str]:
    base = [sys.executable, "-m", "keystead", "scan", "--format", "json"]
    return [*base, "--git", str(target)] if history else [*base, "."]


def gitleaks_command(target: Path, report: Path, *, history: bool) -> list[str]:
    mode = ["git", str(target)] if history else ["dir", "."]
    return [str(scan_peers.gitleaks_bin()), *mode, "--report-format", "json",
            "--report-path", str(report), "--redact", "--no-banner", "--exit-code", "0",
            "--log-level", "error"]


def detect_secrets_command() -> list[str]:
    return [str(scan_peers.detect_secrets_bin()), "scan", "--all-files", "."]


# --- runs -----------------------------------------------------------------------------------

def keystead_hits(report: dict[str, Any], root: Path, where: str) -> list[Hit]:
    return [Hit(where, relative(f["path"], root), int(f["line"]), f["detector"])
            for f in report["findings"]]


def gitleaks_hits(report: list[dict[str, Any]], root: Path, where: str) -> list[Hit]:
    return [Hit(where, relative(f["File"], root), int(f["StartLine"]), f["RuleID"])
            for f in report]


def detect_secrets_hits(results: dict[str, list[dict[str, Any]]], root: Path,
                        where: str) -> list[Hit]:
    return [Hit(where, relative(name, root), int(s["line_number"]), s["type"])
            for name, secrets in results.items() for s in secrets]


def run_keystead(target: Path, *, history: bool) -> list[Hit]:
    out = _run(keystead_command(target, history=history), cwd=target)
    return keystead_hits(json.loads(out), target, "history" if history else "files")


def run_gitleaks(target: Path, *, history: bool) -> list[Hit]:
    with tempfile.TemporaryDirectory(prefix="keystead-bench-gitleaks-") as tmp:
        report = Path(tmp) / "report.json"
        _run(gitleaks_command(target, report, history=history), cwd=target, ok=(0,))
        found = json.loads(report.read_text() or "[]")
    return gitleaks_hits(found, target, "history" if history else "files")


def _detect_secrets(root: Path) -> dict[str, list[dict[str, Any]]]:
    out = _run(detect_secrets_command(), cwd=root, ok=(0,))
    results: dict[str, list[dict[str, Any]]] = json.loads(out)["results"]
    return results


def run_detect_secrets(target: Path, *, history: bool) -> list[Hit]:
    if history:
        return detect_secrets_history(target)
    return detect_secrets_hits(_detect_secrets(target), target, "files")


def introductions(repo: Path, limit: int | None = None) -> list[tuple[str, str, str]]:
    """(commit, path, blob) for every blob a commit added or changed, oldest first: the same
    walk as keystead's `scan --git` (merges against each parent, no rename detection)."""
    spec = ["--all"] if limit is None else ["--all", f"--max-count={limit}"]
    out = subprocess.run(["git", "-C", str(repo), "log", "--reverse", "--topo-order", "-m",
                          "--raw", "-z", "--no-renames", "--no-abbrev", "--diff-filter=AMT",
                          "--format=%x01%H", *spec, "--"],
                         capture_output=True, check=True).stdout
    rows: list[tuple[str, str, str]] = []
    for chunk in out.split(b"\x01"):
        fields = chunk.split(b"\0")
        if not chunk.strip(b"\0\n"):
            continue
        commit = fields[0].strip().decode()
        rest = [f.lstrip(b"\n") for f in fields[1:]]
        for meta, raw_path in zip(rest[::2], rest[1::2], strict=False):
            parts = meta.decode(errors="replace").split()
            if len(parts) < 5 or not parts[0].startswith(":") or parts[1].startswith("160"):
                continue
            if parts[3] != _NULL_SHA:
                rows.append((commit, raw_path.decode(errors="replace"), parts[3]))
    return rows


def _write_blobs(repo: Path, pairs: list[tuple[str, str]], root: Path) -> None:
    """Write blob i of `pairs` ((path, blob)) to root/i/path, through one `git cat-file`."""
    with subprocess.Popen(["git", "-C", str(repo), "cat-file", "--batch"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for index, (path, blob) in enumerate(pairs):
            proc.stdin.write(blob.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) < 3:
                continue
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)
            dest = root / str(index) / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        proc.stdin.close()


def detect_secrets_history(repo: Path, limit: int | None = None) -> list[Hit]:
    order = introductions(repo, limit)
    pairs = list(dict.fromkeys((path, blob) for _, path, blob in order))
    tmp = Path(tempfile.mkdtemp(prefix="keystead-bench-ds-history-"))
    try:
        _write_blobs(repo, pairs, tmp)
        results = _detect_secrets(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return first_per_path(order, pairs, results, tmp)


def first_per_path(order: list[tuple[str, str, str]], pairs: list[tuple[str, str]],
                   results: dict[str, list[dict[str, Any]]], root: Path) -> list[Hit]:
    """detect-secrets' results on the blob tree at `root` (file i/path is pairs[i]) as history
    hits: each secret once per path, at the first (commit, path, blob) of `order` holding it."""
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name, secrets in results.items():
        head, _, _ = relative(name, root).partition("/")
        by_pair.setdefault(pairs[int(head)], []).extend(secrets)
    seen: set[tuple[str, str, str]] = set()
    hits: list[Hit] = []
    for _, path, blob in order:
        for secret in by_pair.pop((path, blob), []):
            key = (path, str(secret["type"]), str(secret["hashed_secret"]))
            if key not in seen:
                seen.add(key)
                hits.append(Hit("history", path, int(secret["line_number"]), secret["type"]))
    return hits


RUNNERS = {"keystead": run_keystead, "gitleaks": run_gitleaks,
           "detect-secrets": run_detect_secrets}
