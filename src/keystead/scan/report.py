"""Reports: text for people, JSON for scripts, SARIF 2.1.0 for code scanning.

Every format shows the secret masked (first 6 characters, `…`, last 4), never in full.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from keystead import __version__
from keystead.scan.detectors import DETECTORS
from keystead.scan.scanner import Finding, ScanStats

__all__ = ["FORMATS", "render", "render_json", "render_sarif", "render_text"]

FORMATS = ("text", "json", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_HELP = ("Treat the key as leaked: rotate it at the provider (for a keystead key: "
         "`keystead keys revoke ID`, or `keystead scan --revoke`), then remove it from the file "
         "and, if it was committed, from the history. See docs/scanner.md.")


_KIND = {d.id: d.kind for d in DETECTORS}


def _where(finding: Finding) -> str:
    text = f"{finding.path}:{finding.line}:{finding.column}"
    return f"{text} (commit {finding.commit[:12]})" if finding.commit else text


def render_text(findings: Sequence[Finding], stats: ScanStats, suppressed: int = 0) -> str:
    lines = [f"{_where(f)}: {f.provider} {_KIND.get(f.detector, 'key')} ({f.detector}) {f.masked}"
             + (f" [verified: {f.verified}]" if f.verified else "") for f in findings]
    scope = (f"{stats.blobs} blob(s) in {stats.commits} commit(s)" if stats.commits
             else f"{stats.files} file(s)")
    summary = f"{len(findings)} finding(s) in {scope}"
    skipped = stats.skipped_binary + stats.skipped_large
    if skipped:
        summary += f"; skipped {stats.skipped_binary} binary and {stats.skipped_large} large"
    if stats.skipped_unreadable:
        summary += f"; {stats.skipped_unreadable} could not be read"
    if suppressed:
        summary += f"; {suppressed} accepted in the baseline"
    return "\n".join([*lines, summary])


def render_json(findings: Sequence[Finding], stats: ScanStats, suppressed: int = 0) -> str:
    return json.dumps({
        "findings": [f.as_dict() for f in findings],
        "count": len(findings),
        "suppressed": suppressed,
        "scanned": {"files": stats.files, "commits": stats.commits, "blobs": stats.blobs,
                    "skipped_binary": stats.skipped_binary,
                    "skipped_large": stats.skipped_large,
                    "skipped_unreadable": stats.skipped_unreadable},
    }, indent=2)


def _uri(path: str) -> dict[str, str]:
    posix = PurePosixPath(path.replace("\\", "/"))
    if posix.is_absolute():
        return {"uri": "file://" + str(posix)}
    text = str(posix)
    return {"uri": text[2:] if text.startswith("./") else text, "uriBaseId": "%SRCROOT%"}


def render_sarif(findings: Sequence[Finding], stats: ScanStats, suppressed: int = 0) -> str:
    rules = [{
        "id": d.id,
        "name": "".join(part.capitalize() for part in d.id.split("-")) + "Secret",
        "shortDescription": {"text": f"{d.provider} credential"},
        "fullDescription": {"text": f"A {d.provider} credential in the format {d.description}."},
        "help": {"text": _HELP},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "secret"], "security-severity": "9.0",
                       "precision": ("very-high" if d.checksum else
                                     "high" if d.context is None else "medium")},
    } for d in DETECTORS]
    index = {d.id: i for i, d in enumerate(DETECTORS)}
    results: list[dict[str, Any]] = []
    for f in findings:
        message = f"{f.provider} key {f.masked} ({f.detector})"
        if f.commit:
            message += f", introduced in commit {f.commit}"
        result: dict[str, Any] = {
            "ruleId": f.detector,
            "ruleIndex": index[f.detector],
            "level": "error",
            "message": {"text": message},
            "locations": [{"physicalLocation": {
                "artifactLocation": _uri(f.path),
                "region": {"startLine": f.line, "startColumn": f.column,
                           "endColumn": f.end_column},
            }}],
            "partialFingerprints": {"keysteadSecret/v1": f.fingerprint},
        }
        properties: dict[str, str] = {}
        if f.commit:
            properties["commit"] = f.commit
        if f.verified:
            properties["verified"] = f.verified
        if properties:
            result["properties"] = properties
        results.append(result)
    return json.dumps({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "keystead-scan",
                "semanticVersion": __version__,
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
            "properties": {"suppressed": suppressed},
        }],
    }, indent=2)


def render(fmt: str, findings: Sequence[Finding], stats: ScanStats, suppressed: int = 0) -> str:
    renderers = {"text": render_text, "json": render_json, "sarif": render_sarif}
    return renderers[fmt](findings, stats, suppressed)
