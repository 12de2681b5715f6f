"""Finding credentials in text, files, directories and standard input.

Files are read as bytes: binary files (a NUL byte in the first 8 KiB) and files over 2 MB are
skipped, as are `.git/`, `node_modules/` and virtualenv directories. A finding carries the
secret in memory (for `--revoke` and the fingerprint) and only its masked form is ever printed.

Each file is scanned and counted once, however many times it is reached: named twice, inside
two of the directories given, or through a symbolic link. `ScanStats.files` counts the files
looked at, the skipped ones included (`skipped_*` say how many and why); sockets, pipes and
devices are not files to scan and are passed over.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from keystead.scan.detectors import DETECTORS, KEY_WORD, Detector, mask

__all__ = ["MAX_BYTES", "SKIP_DIRS", "Finding", "ScanStats", "fingerprint", "is_binary",
           "scan_bytes", "scan_paths", "scan_text"]

MAX_BYTES = 2 * 1024 * 1024
SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache",
                       ".ruff_cache", ".pytest_cache", ".tox", "site-packages"})
_SNIFF = 8192
_NEAR_BEFORE, _NEAR_AFTER, _SHORT_LINE = 80, 40, 400


def fingerprint(detector_id: str, secret: str) -> str:
    """Stable across files, lines and commits: the same key found twice is one baseline entry."""
    return hashlib.sha256(f"{detector_id}:{secret}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str
    provider: str
    path: str
    line: int  # 1-based
    column: int  # 1-based, in characters
    secret: str = field(repr=False)  # never printed: use `masked`
    commit: str | None = None  # with --git: the commit that introduced it

    @property
    def masked(self) -> str:
        return mask(self.secret)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.detector, self.secret)

    @property
    def end_column(self) -> int:
        return self.column + len(self.secret)

    def as_dict(self) -> dict[str, object]:
        return {"detector": self.detector, "provider": self.provider, "path": self.path,
                "line": self.line, "column": self.column, "secret": self.masked,
                "fingerprint": self.fingerprint, "commit": self.commit}


@dataclass(slots=True)
class ScanStats:
    files: int = 0
    skipped_binary: int = 0
    skipped_large: int = 0
    skipped_unreadable: int = 0  # permission denied, or gone while the scan ran
    blobs: int = 0  # with --git
    commits: int = 0  # with --git


def _context_hit(detector: Detector, lines: Sequence[str], index: int, start: int,
                 end: int) -> bool:
    """A credential word near the match on its line, and the context word near it or on a
    neighbouring line. "Near" is a window of characters, so that one minified line of a bundle
    does not lend its words to every identifier on it."""
    assert detector.context is not None
    line = lines[index]
    here = line[max(0, start - _NEAR_BEFORE): end + _NEAR_AFTER]
    if not KEY_WORD.search(here):
        return False
    window = [here] + [lines[i] for i in (index - 1, index + 1)
                       if 0 <= i < len(lines) and len(lines[i]) <= _SHORT_LINE]
    return any(detector.context.search(text) for text in window)


def scan_text(text: str, path: str, detectors: Sequence[Detector] = DETECTORS) -> list[Finding]:
    """Every finding in `text`, in line order; where two detectors match the same characters,
    the first in the table wins."""
    lines = text.splitlines()
    findings: list[Finding] = []
    for index, line in enumerate(lines):
        taken: list[tuple[int, int]] = []
        for detector in detectors:
            for match in detector.pattern.finditer(line):
                start, end = match.span("secret")
                if any(start < t_end and t_start < end for t_start, t_end in taken):
                    continue
                secret = match.group("secret")
                if not detector.accepts(secret):
                    continue
                if detector.context is not None and not _context_hit(detector, lines, index,
                                                                     start, end):
                    continue
                if detector.not_after is not None and detector.not_after.search(line[:start]):
                    continue
                taken.append((start, end))
                findings.append(Finding(detector.id, detector.provider, path, index + 1,
                                        start + 1, secret))
    findings.sort(key=lambda f: (f.line, f.column))
    return findings


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:_SNIFF]


def scan_bytes(data: bytes, path: str, stats: ScanStats | None = None) -> list[Finding]:
    """Findings in a file's bytes, or none if it is binary or too large."""
    if stats is not None:
        stats.files += 1
    if len(data) > MAX_BYTES:
        if stats is not None:
            stats.skipped_large += 1
        return []
    if is_binary(data):
        if stats is not None:
            stats.skipped_binary += 1
        return []
    return scan_text(data.decode("utf-8", errors="replace"), path)


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _files(paths: Iterable[Path]) -> Iterator[tuple[Path, os.stat_result | None]]:
    """Each file once (by device and inode, so a link or an overlapping argument does not
    repeat it), with its status; None: it cannot be looked at."""
    seen: set[tuple[int, int]] = set()
    for given in paths:
        if given.is_dir():
            found: Iterable[Path] = _walk(given)
        elif not (set(given.parts) & SKIP_DIRS):
            found = (given,)
        else:
            continue
        for path in found:
            try:
                status = path.stat()
            except OSError:  # a dangling link, no permission on the way
                yield path, None
                continue
            if not stat.S_ISREG(status.st_mode):
                continue
            if (status.st_dev, status.st_ino) in seen:
                continue
            seen.add((status.st_dev, status.st_ino))
            yield path, status


def scan_paths(paths: Iterable[Path], stats: ScanStats | None = None) -> list[Finding]:
    """Findings in files and, recursively, directories. Paths are reported as given."""
    findings: list[Finding] = []
    for path, status in _files(paths):
        data = None
        if status is not None and status.st_size <= MAX_BYTES:
            try:
                data = path.read_bytes()
            except OSError:
                status = None
        if data is not None:
            findings += scan_bytes(data, path.as_posix(), stats)
        elif stats is not None:
            stats.files += 1
            if status is None:
                stats.skipped_unreadable += 1
            else:
                stats.skipped_large += 1
    return findings
