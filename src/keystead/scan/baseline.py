"""Baselines: findings someone looked at and accepted (a test fixture, a revoked key in old
history), recorded by fingerprint so they stop failing the scan.

The fingerprint is the SHA-256 of the detector id and the secret: it survives the key moving to
another line, file or commit, and the file holds no secret (only the masked form, for people).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from keystead.private_files import write_private
from keystead.scan.scanner import Finding

__all__ = ["BaselineError", "load_baseline", "write_baseline"]

VERSION = 1


class BaselineError(Exception):
    """The baseline file cannot be read or is not a keystead baseline."""


def load_baseline(path: Path) -> set[str]:
    """The accepted fingerprints."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise BaselineError(f"cannot read the baseline {path}: {exc.strerror}") from None
    except ValueError:
        raise BaselineError(f"{path} is not JSON: write one with --write-baseline") from None
    entries = data.get("findings") if isinstance(data, dict) else None
    if not isinstance(entries, list) or data.get("version") != VERSION:
        raise BaselineError(f"{path} is not a keystead scan baseline (version {VERSION})")
    return {str(e["fingerprint"]) for e in entries if isinstance(e, dict) and "fingerprint" in e}


def write_baseline(path: Path, findings: Sequence[Finding]) -> int:
    """Record `findings` (one entry per fingerprint, the first place seen); returns the count."""
    first: dict[str, Finding] = {}
    for f in sorted(findings, key=lambda f: (f.path, f.line, f.column)):
        first.setdefault(f.fingerprint, f)
    entries = [{"fingerprint": f.fingerprint, "detector": f.detector, "secret": f.masked,
                "path": f.path, "line": f.line, **({"commit": f.commit} if f.commit else {})}
               for f in first.values()]
    document = {"version": VERSION, "tool": "keystead scan", "findings": entries}
    # Where the leaks are and their fingerprints: the owner's to read (0600), like the report.
    write_private(path, json.dumps(document, indent=2) + "\n", exclusive=False)
    return len(entries)
