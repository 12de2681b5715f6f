"""`keystead scan` counts each file once: named twice, inside two of the directories given, or
reached through a link; a file it could not read is counted and said; in git history a large
blob is one skipped blob however many commits carry it."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from keystead.cli.main import cli
from scan.synth import synth

RNG = random.Random(5)


def _scan(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["scan", "--format", "json", *args],
                                catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return dict(json.loads(result.stdout))


def _tree(root: Path) -> str:
    key = synth("groq", RNG)
    (root / "sub").mkdir()
    (root / "app.py").write_text(f'KEY = "{key}"\n')
    (root / "sub" / "notes.md").write_text("nothing here\n")
    (root / "image.png").write_bytes(b"\x89PNG\0\0")
    os.symlink("app.py", root / "same-app.py")  # the same file under a second name
    return key


def test_each_file_is_counted_and_reported_once(tmp_path: Path) -> None:
    _tree(tmp_path)
    once = _scan(str(tmp_path))
    assert once["scanned"]["files"] == 3 and once["scanned"]["skipped_binary"] == 1
    assert once["count"] == 1
    for args in ([str(tmp_path), str(tmp_path / "sub")],
                 [str(tmp_path / "app.py"), str(tmp_path / "app.py"), str(tmp_path)],
                 [str(tmp_path), str(tmp_path / "same-app.py")]):
        again = _scan(*args)
        assert again["scanned"] == once["scanned"], args
        assert again["count"] == 1, args


def test_the_text_summary_counts_the_same(tmp_path: Path) -> None:
    _tree(tmp_path)
    result = CliRunner().invoke(cli, ["scan", str(tmp_path), str(tmp_path / "sub")])
    assert "1 finding(s) in 3 file(s); skipped 1 binary and 0 large" in result.stdout


def test_a_file_that_cannot_be_read_is_counted_and_said(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("hello\n")
    os.symlink(tmp_path / "gone.txt", tmp_path / "dangling.txt")
    os.mkfifo(tmp_path / "pipe")  # not a file: passed over, never read (it would block)
    report = _scan(str(tmp_path))
    assert report["scanned"]["files"] == 2 and report["scanned"]["skipped_unreadable"] == 1
    text = CliRunner().invoke(cli, ["scan", str(tmp_path)]).stdout
    assert "0 finding(s) in 2 file(s); 1 could not be read" in text


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_a_large_blob_in_many_commits_is_one_skipped_blob(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "config", "user.email", "dev@example.com")
    _git(tmp_path, "config", "user.name", "dev")
    (tmp_path / "big.bin.txt").write_text("a" * (2 * 1024 * 1024 + 1))
    for i in range(3):  # the same large blob, under three paths, in three commits
        (tmp_path / f"small{i}.txt").write_text(f"note {i}\n")
        if i:
            (tmp_path / f"big{i}.txt").write_text("a" * (2 * 1024 * 1024 + 1))
        _git(tmp_path, "add", "-A")
        _git(tmp_path, "commit", "-qm", f"commit {i}")
    scanned = _scan("--git", str(tmp_path))["scanned"]
    assert scanned["commits"] == 3 and scanned["blobs"] == 4  # 3 small notes, 1 large blob
    assert scanned["skipped_large"] == 1 and scanned["files"] == 4
