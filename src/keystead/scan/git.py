"""Scanning a repository's history: what every commit added, once.

`git log --raw` walks the commits oldest first (the whole history, or a range `A..B`) and says,
for each, which blobs it brought in at which paths and which blob each replaced; `git cat-file
--batch` then streams those blobs in one process. A finding is reported once per (key, path),
at the commit that introduced it, so a key added and later deleted is still found, and one left
in place for a hundred commits is reported once.

A new file is scanned whole. A changed one is scanned only where it changed: the lines its
previous version did not have, with the few lines around them that tie a value to its provider
(a neighbouring comment, the API host a few lines up, the other pieces of a split key) and the
lines that name them from above (the YAML, JSON or HCL keys they sit under, the `[section]`, a
CSV header). A key a commit introduces is on a line the commit added, so it is there; a key on
an unchanged line was in the previous version at the same path, found (or not) when that
version came in. This is what makes a history scan cost about as much as the lines it adds
(`git log -p`, as gitleaks reads it), not the size of every version of every file.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from keystead.scan.scanner import (
    MAX_BYTES,
    SKIP_DIRS,
    Finding,
    ScanStats,
    is_binary,
    scan_bytes,
    scan_excerpt,
)

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


def _introductions(repo: Path, revisions: str | None) -> Iterator[tuple[str, str, str | None,
                                                                         str]]:
    """(commit, path, previous blob or None, blob) for every blob a commit added or modified,
    oldest commit first; a merge's blob once per parent it differs from."""
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
            before, blob, mode = parts[2], parts[3], parts[1]
            if blob == _NULL_SHA or mode.startswith("160"):  # deleted, or a submodule
                continue
            # A type change (a link becoming a file) is read whole, like a new file.
            previous = None if before == _NULL_SHA or parts[4] == "T" else before
            yield commit, raw_path.decode(errors="replace"), previous, blob


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


# Lines kept on each side of a changed one: a neighbouring line's tie (1), the provider's host
# above a header (6), the pieces of a key split over lines.
_AROUND = 6
# How far up the lines naming a changed one (its YAML parents, its `[section]`) are looked for.
_ABOVE = 400


def _indent(line: bytes) -> int:
    return len(line) - len(line.lstrip(b" \t"))


def _excerpt(lines: Sequence[bytes], before: set[bytes]) -> list[int] | None:
    """The lines of a changed file to scan (see the module's docstring), ascending; None: all
    of them (most of the file changed)."""
    added = [i for i, line in enumerate(lines) if line not in before]
    if 2 * len(added) > len(lines):
        return None
    keep: set[int] = set()
    for i in added:
        keep.update(range(max(0, i - _AROUND), min(len(lines), i + _AROUND + 1)))
    if not keep:
        return []
    first = next((i for i, line in enumerate(lines) if line.strip()), 0)  # a CSV's header
    keep.add(first)
    for start in sorted(i for i in keep if i - 1 not in keep):
        level = _indent(lines[start]) if lines[start].strip() else 1 << 30
        for j in range(start - 1, max(-1, start - _ABOVE), -1):
            line = lines[j]
            if not line.strip():
                continue
            if line.startswith(b"["):  # a TOML/INI section: nothing above names the line
                keep.add(j)
                break
            if _indent(line) < level:
                keep.add(j)
                level = _indent(line)
                if level == 0:
                    break
    return sorted(keep)


def scan_git(repo: Path, revisions: str | None = None,
             stats: ScanStats | None = None) -> list[Finding]:
    """Findings in the history of `repo` (all refs, or `revisions` such as `main..feature`)."""
    _git(repo, "rev-parse", "--git-dir")
    order: list[tuple[str, str, str | None, str]] = []
    commits: set[str] = set()
    for commit, path, previous, blob in _introductions(repo, revisions):
        commits.add(commit)
        if set(Path(path).parts) & SKIP_DIRS:
            continue
        order.append((commit, path, previous, blob))
    # Every blob is read once, a previous version before the version that replaces it, and
    # held only until the last change that needs it.
    reads: list[str] = []
    last_use: dict[str, int] = {}
    for number, (_, _, previous, blob) in enumerate(order):
        for sha in (previous, blob):
            if sha is not None:
                if sha not in last_use:
                    reads.append(sha)
                last_use[sha] = number
    held: dict[str, bytes | None] = {}
    lines_of: dict[str, list[bytes]] = {}
    by_change: dict[tuple[str, str | None], list[Finding]] = {}
    counted: set[str] = set()
    seen: set[tuple[str, str]] = set()
    findings: list[Finding] = []
    stream = _read_blobs(repo, reads)
    for number, (commit, path, previous, blob) in enumerate(order):
        while blob not in held or (previous is not None and previous not in held):
            sha, data = next(stream)
            held[sha] = data
        found = by_change.get((blob, previous))
        if found is None:
            found = _scan_change(held, lines_of, previous, blob, stats, blob not in counted)
            counted.add(blob)
            by_change[(blob, previous)] = found
        for finding in found:
            if (finding.fingerprint, path) in seen:
                continue
            seen.add((finding.fingerprint, path))
            findings.append(_at(finding, path, commit))
        for sha in (previous, blob):
            if sha is not None and last_use[sha] == number:
                held.pop(sha, None)
                lines_of.pop(sha, None)
    for _ in stream:  # nothing is left to read: this lets git exit and be waited for
        pass
    if stats is not None:
        stats.commits += len(commits)
        stats.blobs += len(counted)
    return findings


def _scan_change(held: dict[str, bytes | None], lines_of: dict[str, list[bytes]],
                 previous: str | None, blob: str, stats: ScanStats | None,
                 first: bool) -> list[Finding]:
    """The findings a change brings: a new blob's all, a changed one's in its excerpt. `first`:
    the blob is counted in `stats` (once, however many changes bring it)."""
    data = held[blob]
    if data is None:  # too large (or missing): counted once, like a large file
        if stats is not None and first:
            stats.files += 1
            stats.skipped_large += 1
        return []
    old = held.get(previous) if previous is not None else None
    if previous is None or old is None or is_binary(data) or is_binary(old):
        return scan_bytes(data, "", stats if first else None)
    if stats is not None and first:
        stats.files += 1
    lines = _lines(lines_of, blob, data)
    keep = _excerpt(lines, set(_lines(lines_of, previous, old)))
    if keep is None:
        return scan_bytes(data, "", None)
    return scan_excerpt(lines, keep, "")


def _lines(cache: dict[str, list[bytes]], sha: str, data: bytes) -> list[bytes]:
    if sha not in cache:
        cache[sha] = data.split(b"\n")
    return cache[sha]


def _at(finding: Finding, path: str, commit: str) -> Finding:
    return Finding(finding.detector, finding.provider, path, finding.line,
                   finding.column, finding.secret, commit)
