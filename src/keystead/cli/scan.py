"""`keystead scan PATH... | -` and `keystead scan --git [REPO] [--range A..B]`.

Needs no config or master key: only `--revoke` opens the store (or, with --server, calls the
admin API). Exit 0 without findings, 1 with findings, 2 for a usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from keystead.cli.context import State, friendly
from keystead.keys.format import parse_key
from keystead.private_files import write_private
from keystead.scan.baseline import BaselineError, load_baseline, write_baseline
from keystead.scan.git import GitError, scan_git
from keystead.scan.report import FORMATS, render
from keystead.scan.scanner import Finding, ScanStats, scan_bytes, scan_paths

STDIN_PATH = "stdin"


@click.command("scan")
@click.argument("paths", nargs=-1, metavar="PATH... | -")
@click.option("--git", "git_repo", is_flag=False, flag_value=".", default=None,
              metavar="[REPO]", help="Scan the history of a git repository (default: here).")
@click.option("--range", "revisions", metavar="A..B",
              help="With --git: only the commits of this revision range.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to FILE instead of standard output.")
@click.option("--baseline", "baseline", type=click.Path(dir_okay=False, path_type=Path),
              help="Accepted findings (from --write-baseline): not reported.")
@click.option("--write-baseline", "write_to", type=click.Path(dir_okay=False, path_type=Path),
              help="Record every current finding in FILE as accepted, then exit 0.")
@click.option("--revoke", is_flag=True,
              help="Revoke the keystead keys found (in this store, or with --server through "
                   "the admin API).")
@click.pass_obj
@friendly
def scan(state: State, paths: tuple[str, ...], git_repo: str | None, revisions: str | None,
         fmt: str, output: Path | None, baseline: Path | None, write_to: Path | None,
         revoke: bool) -> None:
    """Find provider and keystead keys in files, standard input (-) or git history.

    Exit 0: nothing found; 1: findings (printed masked); 2: a usage error.
    """
    stats = ScanStats()
    findings = _collect(paths, git_repo, revisions, stats)
    if write_to is not None:
        count = write_baseline(write_to, findings)
        click.echo(f"wrote {count} accepted finding(s) to {write_to}", err=True)
        sys.exit(0)
    suppressed = 0
    if baseline is not None:
        try:
            accepted = load_baseline(baseline)
        except BaselineError as exc:
            raise click.UsageError(str(exc)) from None
        kept = [f for f in findings if f.fingerprint not in accepted]
        suppressed, findings = len(findings) - len(kept), kept
    report = render(fmt, findings, stats, suppressed)
    if output is not None:
        write_private(output, report + "\n", exclusive=False)  # where the leaks are: 0600
        click.echo(f"{len(findings)} finding(s); report written to {output}", err=True)
    else:
        click.echo(report)
    if revoke:
        _revoke(state, findings)
    sys.exit(1 if findings else 0)


def _collect(paths: tuple[str, ...], git_repo: str | None, revisions: str | None,
             stats: ScanStats) -> list[Finding]:
    if git_repo is not None:
        if paths:
            raise click.UsageError("give either PATH... or --git [REPO], not both")
        try:
            return scan_git(Path(git_repo), revisions, stats)
        except GitError as exc:
            raise click.UsageError(str(exc)) from None
    if revisions is not None:
        raise click.UsageError("--range needs --git")
    if not paths:
        raise click.UsageError("nothing to scan: give PATH..., - for standard input, or --git")
    findings: list[Finding] = []
    files: list[Path] = []
    for text in paths:
        if text == "-":
            data: bytes = sys.stdin.buffer.read()
            findings += scan_bytes(data, STDIN_PATH, stats)
            continue
        path = Path(text)
        if not path.exists():
            raise click.UsageError(f"no such file or directory: {text}")
        files.append(path)
    return findings + scan_paths(files, stats)


def _revoke(state: State, findings: list[Finding]) -> None:
    from keystead.cli.backend import BackendError

    ids = list(dict.fromkeys(parsed.key_id for f in findings if f.detector == "keystead"
                             if (parsed := parse_key(f.secret)) is not None))
    backend = state.backend() if ids else None
    revoked: list[str] = []
    already: list[str] = []
    unknown: list[str] = []
    for key_id in ids:
        assert backend is not None
        where = next(f for f in findings if f.detector == "keystead" and key_id in f.secret)
        try:
            if backend.show_key(key_id).get("status") == "revoked":
                already.append(key_id)
                continue
            backend.revoke_key(key_id, f"found by keystead scan in {where.path}:{where.line}")
        except BackendError as exc:
            if exc.status != 404:
                raise
            unknown.append(key_id)
            continue
        revoked.append(key_id)
    summary = f"revoked {len(revoked)} keystead key(s)"
    if revoked:
        summary += ": " + ", ".join(revoked)
    if already:
        summary += f"; {len(already)} already revoked: " + ", ".join(already)
    if unknown:
        summary += f"; {len(unknown)} not in this store: " + ", ".join(unknown)
    click.echo(summary, err=True)


COMMANDS = [scan]
