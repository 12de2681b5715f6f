"""Finding credentials in text, files, directories and standard input.

Files are read as bytes: binary files (a NUL byte in the first 8 KiB) and files over 2 MB are
skipped, as are `.git/`, `node_modules/` and virtualenv directories. A finding carries the
secret in memory (for `--revoke` and the fingerprint) and only its masked form is ever printed.
"""

from __future__ import annotations

import hashlib
import os
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


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from _walk(path)
        elif path.is_file() and not (set(path.parts) & SKIP_DIRS):
            yield path


def scan_paths(paths: Iterable[Path], stats: ScanStats | None = None) -> list[Finding]:
    """Findings in files and, recursively, directories. Paths are reported as given."""
    findings: list[Finding] = []
    for path in _files(paths):
        try:
            if path.stat().st_size > MAX_BYTES:
                if stats is not None:
                    stats.files += 1
                    stats.skipped_large += 1
                continue
            data = path.read_bytes()
        except OSError:
            continue
        findings += scan_bytes(data, path.as_posix(), stats)
    return findings
