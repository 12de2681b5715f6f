"""Scanning a repository's history: every blob any commit added or changed, once.

`git log --raw` walks the commits oldest first (the whole history, or a range `A..B`) and says,
for each, which blobs it brought in at which paths; `git cat-file --batch` then streams those
blobs in one process. A finding is reported once per (key, path), at the commit that introduced
it, so a key added and later deleted is still found, and one left in place for a hundred commits
is reported once.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from keystead.scan.scanner import MAX_BYTES, SKIP_DIRS, Finding, ScanStats, scan_bytes

__all__ = ["GitError", "scan_git"]

_NULL_SHA = "0" * 40


class GitError(Exception):
    """git is missing, the directory is not a repository, or the range is not valid."""


def _git(repo: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)  # noqa: S603, S607
    except FileNotFoundError:
        raise GitError("git is not installed (needed by --git)") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed in {repo}: {message[-1] if message else '?'}")
    return done.stdout


def _introductions(repo: Path, revisions: str | None) -> Iterator[tuple[str, str, str]]:
    """(commit, path, blob) for every blob a commit added or modified, oldest commit first."""
    spec = [revisions] if revisions else ["--all"]
    out = _git(repo, "log", "--reverse", "--topo-order", "-m", "--raw", "-z", "--no-renames",
               "--no-abbrev", "--diff-filter=AMT", "--format=%x01%H", *spec, "--")
    for chunk in out.split(b"\x01"):
        if not chunk.strip(b"\0\n"):
            continue
        fields = chunk.split(b"\0")
        commit = fields[0].strip().decode()
        rest = [f.lstrip(b"\n") for f in fields[1:]]
        for meta, raw_path in zip(rest[::2], rest[1::2], strict=False):
            parts = meta.decode(errors="replace").split()
            if len(parts) < 5 or not parts[0].startswith(":"):
                continue
            blob, mode = parts[3], parts[1]
            if blob == _NULL_SHA or mode.startswith("160"):  # deleted, or a submodule
                continue
            yield commit, raw_path.decode(errors="replace"), blob


def _read_blobs(repo: Path, blobs: list[str]) -> Iterator[tuple[str, bytes | None]]:
    """(blob, content) in order, None for a blob over the size limit or missing. A thread
    writes every request while this one reads the answers: one stream each way, no round trip
    per blob (which cost more than the scanning)."""
    if not blobs:
        return
    with subprocess.Popen(["git", "-C", str(repo), "cat-file", "--batch", "--buffer"],  # noqa: S603, S607
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        def write() -> None:
            try:
                stdin.write("".join(f"{blob}\n" for blob in blobs).encode())
                stdin.close()
            except BrokenPipeError:  # git stopped early: the reader sees it
                pass

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        for blob in blobs:
            header = stdout.readline().split()
            if len(header) < 3:  # "<sha> missing"
                yield blob, None
                continue
            size = int(header[2])
            data = stdout.read(size)
            stdout.read(1)  # the newline after the content
            yield blob, None if size > MAX_BYTES else data
        writer.join()
        proc.wait()


def scan_git(repo: Path, revisions: str | None = None,
             stats: ScanStats | None = None) -> list[Finding]:
    """Findings in the history of `repo` (all refs, or `revisions` such as `main..feature`)."""
    _git(repo, "rev-parse", "--git-dir")
    order: list[tuple[str, str, str]] = []
    commits: set[str] = set()
    for commit, path, blob in _introductions(repo, revisions):
        commits.add(commit)
        if set(Path(path).parts) & SKIP_DIRS:
            continue
        order.append((commit, path, blob))
    unique = list(dict.fromkeys(blob for _, _, blob in order))
    # Each blob is scanned once as it streams in (its path only labels the findings).
    by_blob: dict[str, list[Finding] | None] = {}
    for blob, data in _read_blobs(repo, unique):
        if data is not None:
            by_blob[blob] = scan_bytes(data, "", stats)
            continue
        by_blob[blob] = None  # too large (or missing): counted once, like a large file
        if stats is not None:
            stats.files += 1
            stats.skipped_large += 1
    if stats is not None:
        stats.commits += len(commits)
        stats.blobs += len(unique)
    seen: set[tuple[str, str]] = set()
    findings: list[Finding] = []
    for commit, path, blob in order:
        found = by_blob.get(blob)
        if found is None:
            continue
        for finding in found:
            if (finding.fingerprint, path) in seen:
                continue
            seen.add((finding.fingerprint, path))
            findings.append(_at(finding, path, commit))
    return findings


def _at(finding: Finding, path: str, commit: str) -> Finding:
    return Finding(finding.detector, finding.provider, path, finding.line,
                   finding.column, finding.secret, commit)
