"""Finding credentials in text, files, directories and standard input.

Files are read as bytes: binary files (a NUL byte in the first 8 KiB) and files over 2 MB are
skipped, as are `.git/`, `node_modules/` and virtualenv directories. A finding carries the
secret in memory (for `--revoke` and the fingerprint) and only its masked form is ever printed.

Each file is scanned and counted once, however many times it is reached: named twice, inside
two of the directories given, or through a symbolic link. `ScanStats.files` counts the files
looked at, the skipped ones included (`skipped_*` say how many and why); sockets, pipes and
devices are not files to scan and are passed over.

Speed: a text first meets the prefilter, one RE2 pass (a DFA, linear time) looking for all
the detectors' anchor literals at once; a text holding none of them (most files) is done.
Otherwise only the detectors whose anchors it holds run, each once over the whole text, then
the views
(`keystead.scan.views`) where the text has what they unwrap. Directories with many files are
scanned by a pool of processes, one per core.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import multiprocessing
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import re2

from keystead.scan import views
from keystead.scan.context import tied
from keystead.scan.detectors import ANCHORS, DETECTORS, Detector, mask

__all__ = ["MAX_BYTES", "SKIP_DIRS", "Finding", "ScanStats", "fingerprint", "is_binary",
           "scan_bytes", "scan_excerpt", "scan_paths", "scan_text"]

MAX_BYTES = 2 * 1024 * 1024
SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache",
                       ".ruff_cache", ".pytest_cache", ".tox", "site-packages"})
_SNIFF = 8192
# RE2 finds any of ~45 literals in one pass, 20 times faster than Python's re (which tries
# each alternative at each position) or a `bytes.find` per literal.
_PREFILTER: Any = re2.compile(  # type: ignore[no-untyped-call]
    b"(?i)" + b"|".join(re.escape(a).encode() for a in ANCHORS))


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
    # "checksum": the issuer's embedded checksum matched (keystead and GitHub classic keys),
    # so the finding is a real token, not a look-alike. None: matched by format and context.
    verified: str | None = None

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
                "fingerprint": self.fingerprint, "commit": self.commit,
                "verified": self.verified}


@dataclass(slots=True)
class ScanStats:
    files: int = 0
    skipped_binary: int = 0
    skipped_large: int = 0
    skipped_unreadable: int = 0  # permission denied, or gone while the scan ran
    blobs: int = 0  # with --git
    commits: int = 0  # with --git

    def add(self, other: ScanStats) -> None:
        self.files += other.files
        self.skipped_binary += other.skipped_binary
        self.skipped_large += other.skipped_large
        self.skipped_unreadable += other.skipped_unreadable
        self.blobs += other.blobs
        self.commits += other.commits


# An anchor found implies the anchors inside it (`logic.azure.com` holds `azure`): RE2 reports
# the leftmost match only, so those would otherwise go unseen.
_IMPLIED = {a: frozenset(b for b in ANCHORS if b in a) for a in ANCHORS}


def _active(text: str | bytes, detectors: Sequence[Detector]) -> list[Detector]:
    """The detectors one of whose anchors is in `text` (in any case)."""
    if isinstance(text, str):
        text = text.encode("utf-8", errors="replace")
    hits: set[str] = set()
    for found in _PREFILTER.findall(text):
        hits |= _IMPLIED[found.decode().lower()]
    return [d for d in detectors if not hits.isdisjoint(d.anchors)]


def _scan_view(view: Sequence[str], lines: Sequence[str], detectors: Sequence[Detector],
               emit: Callable[[Detector, int, int, str], None]) -> int:
    """Each detector once over the whole view; `emit(detector, line index, start column,
    secret)` for each accepted match. Where two detectors match the same characters, the first
    in the table wins. Returns how many values had a context format's shape but no tie."""
    untied = 0
    text = "\n".join(view)
    starts: list[int] | None = None
    taken: list[tuple[int, int]] = []
    for detector in detectors:
        for match in detector.pattern.finditer(text):
            start, end = match.span("secret")
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            secret = match.group("secret")
            body = match.group("body") if "body" in detector.pattern.groupindex else None
            if not detector.accepts(secret, body):
                continue
            if starts is None:
                starts = [0, *itertools.accumulate(len(line) + 1 for line in view[:-1])]
            index = bisect.bisect_right(starts, start) - 1
            line, column = view[index], start - starts[index]
            if detector.not_after is not None and detector.not_after.search(line[:column]):
                continue
            if detector.context is not None and not tied(detector, line, column,
                                                         column + len(secret), lines, index):
                untied += 1
                continue
            taken.append((start, end))
            emit(detector, index, column, secret)
    return untied


# How many lines on a view's line may hold a key it found whole on one of them.
_VIEW_REACH = 20


def scan_text(text: str, path: str, detectors: Sequence[Detector] = DETECTORS,
              active: Sequence[Detector] | None = None) -> list[Finding]:
    """Every finding in `text`, in line order. `active`: the detectors whose anchors the text
    holds, if the caller has already looked."""
    if active is None:
        active = _active(text, detectors)
    if not active:
        return []
    lines = text.split("\n")
    found: dict[tuple[int, str], Finding] = {}

    def keep(detector: Detector, index: int, column: int, secret: str, raw: bool) -> None:
        if not raw and secret[:8] not in lines[index]:
            # A view that took in later lines (a curl's `\`-continued ones, pieces across
            # lines) found a key that stands whole on one of them: it is reported there.
            for later in range(index + 1, min(len(lines), index + _VIEW_REACH)):
                if secret in lines[later]:
                    index, column = later, lines[later].index(secret)
                    break
        if (index, secret) in found:
            return
        if not raw:
            for spot, f in list(found.items()):
                if f.line != index + 1 or f.detector != detector.id:
                    continue
                if f.secret in secret:  # a piece found alone: the joined key replaces it
                    del found[spot]
                elif f.secret[:12] == secret[:12] or f.secret[-12:] == secret[-12:]:
                    return  # the same key read again through a view (a URL's %2F decoded)
        if not raw:  # a view's column: place it on the original line where it can be seen
            where = lines[index].find(secret[:8])
            column = where if where >= 0 else min(column, len(lines[index]))
        found[(index, secret)] = Finding(detector.id, detector.provider, path, index + 1,
                                         column + 1, secret,
                                         verified="checksum" if detector.checksum else None)

    untied = _scan_view(lines, lines, active, lambda d, i, c, s: keep(d, i, c, s, True))
    derived: list[list[str] | None] = []
    # The structure view only ties values the line itself does not: it is read when one of
    # those is left, or when a master key may sit under a `keystead:` section.
    if untied or any(d.id == "keystead-master-key" for d in active):
        derived.append(views.structure(lines))
    if "\\" in text or "%" in text:
        derived.append(views.unescaped(lines))
    derived.append(views.joined(lines))
    for view in derived:
        if view is not None:
            _scan_view(view, lines, active, lambda d, i, c, s: keep(d, i, c, s, False))
    # Wrapped keys: only the formats with a prefix, which say where a key starts; a context
    # format's bare hex or base62 would be glued out of any two lines of a dump.
    prefixed = [d for d in active if d.context is None]
    if prefixed:
        whole = frozenset(f.line - 1 for f in found.values()
                          if lines[f.line - 1].rstrip().endswith(f.secret))
        view = views.wrapped(lines, whole)
        if view is not None:
            _scan_view(view, lines, prefixed, lambda d, i, c, s: keep(d, i, c, s, False))
    return sorted(found.values(), key=lambda f: (f.line, f.column))


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
    if _PREFILTER.search(data) is None:
        return []
    return scan_text(data.decode("utf-8", errors="replace"), path,
                     active=_active(data, DETECTORS))


def scan_excerpt(lines: Sequence[bytes], keep: Sequence[int], path: str) -> list[Finding]:
    """Findings in the lines `keep` (0-based, ascending) of a text split on newlines, each
    reported at its line in the whole text. Runs of kept lines are read as one text, with a
    blank line where lines were left out (a YAML path or a CSV header above a changed line
    still reads as one)."""
    parts: list[bytes] = []
    where: list[int] = []
    for i in keep:
        if where and i != where[-1] + 1:
            parts.append(b"")
            where.append(-1)
        parts.append(lines[i])
        where.append(i)
    data = b"\n".join(parts)
    if _PREFILTER.search(data) is None:
        return []
    found = scan_text(data.decode("utf-8", errors="replace"), path,
                      active=_active(data, DETECTORS))
    return [replace(f, line=where[f.line - 1] + 1) for f in found if where[f.line - 1] >= 0]


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


def _scan_file(path: Path, status: os.stat_result | None, stats: ScanStats) -> list[Finding]:
    data = None
    if status is not None and status.st_size <= MAX_BYTES:
        try:
            data = path.read_bytes()
        except OSError:
            status = None
    if data is not None:
        return scan_bytes(data, path.as_posix(), stats)
    stats.files += 1
    if status is None:
        stats.skipped_unreadable += 1
    else:
        stats.skipped_large += 1
    return []


def _scan_chunk(chunk: Sequence[tuple[Path, os.stat_result | None]]
                ) -> tuple[list[Finding], ScanStats]:
    stats = ScanStats()
    findings: list[Finding] = []
    for path, status in chunk:
        findings += _scan_file(path, status, stats)
    return findings, stats


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Below this many files a pool's start-up (about 50 ms) is not worth it.
_PARALLEL_FILES, _CHUNK = 2000, 256


def scan_paths(paths: Iterable[Path], stats: ScanStats | None = None,
               workers: int | None = None) -> list[Finding]:
    """Findings in files and, recursively, directories. Paths are reported as given. Many
    files are scanned by `workers` processes (default: one per core), in chunks, with the
    findings in the same order as one process gives."""
    items = list(_files(paths))
    workers = _cores() if workers is None else workers
    if workers < 2 or len(items) < _PARALLEL_FILES:
        results = [_scan_chunk(items)]
    else:
        chunks = [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as pool:
            results = list(pool.map(_scan_chunk, chunks))
    findings: list[Finding] = []
    for found, counted in results:
        findings += found
        if stats is not None:
            stats.add(counted)
    return findings
