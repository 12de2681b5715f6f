"""History scans read a changed file only where it changed (plus what ties a value there to its
provider): keys added deep inside big files are still found, at the commit that added them, and
a key already there is not reported again."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from keystead.scan.git import scan_git
from scan.synth import synth

RNG = random.Random(7070)
FILLER = [f"setting_{i} = {i * 7}" for i in range(200)]


class Repo:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "dev@example.com")
        self.git("config", "user.name", "dev")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.root), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
            (self.root / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-qm", message)
        return self.git("rev-parse", "HEAD")


def findings(repo: Repo) -> list[tuple[str, str, int, str]]:
    return [(f.commit or "", f.path, f.line, f.secret) for f in scan_git(repo.root)]


def test_a_key_added_far_below_the_names_that_tie_it_is_found(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    yaml_head = ["llm:", "  cohere:", "    timeout: 30", *(f"    opt_{i}: {i}" for i in range(40))]
    toml_head = ["[mistral]", *FILLER[:60]]
    csv_head = ["team,provider,region,api_key", *(f"t{i},openai,eu,-" for i in range(60))]
    repo.commit({"values.yaml": "\n".join(yaml_head) + "\n",
                 "conf.toml": "\n".join(toml_head) + "\n",
                 "keys.csv": "\n".join(csv_head) + "\n"}, "big files, no keys")
    cohere, mistral, cohere2 = synth("cohere", RNG), synth("mistral", RNG), synth("cohere", RNG)
    added = repo.commit({"values.yaml": "\n".join([*yaml_head, f"    apiKey: {cohere}"]) + "\n",
                         "conf.toml": "\n".join([*toml_head, f'token = "{mistral}"']) + "\n",
                         "keys.csv": "\n".join([*csv_head, f"t9,cohere,us,{cohere2}"]) + "\n"})
    assert sorted(findings(repo)) == sorted([
        (added, "values.yaml", len(yaml_head) + 1, cohere),
        (added, "conf.toml", len(toml_head) + 1, mistral),
        (added, "keys.csv", len(csv_head) + 1, cohere2)])


def test_a_tie_added_later_reports_the_key_then_and_once(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    mistral = synth("mistral", RNG)
    body = [*FILLER[:50], f'api_key = "{mistral}"', *FILLER[50:]]
    repo.commit({"client.py": "\n".join(body) + "\n"}, "a generic name: not yet a finding")
    assert findings(repo) == []
    tied = repo.commit({"client.py": "\n".join([*body[:50], "# Mistral (la Plateforme)",
                                                *body[50:]]) + "\n"})
    repo.commit({"client.py": "\n".join(["# header", *body[:50], "# Mistral (la Plateforme)",
                                         *body[50:]]) + "\n"}, "the key moves down a line")
    assert findings(repo) == [(tied, "client.py", 52, mistral)]


def test_a_copy_of_a_changed_file_is_read_whole_at_its_new_path(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    groq = synth("groq", RNG)
    first = repo.commit({"a.env": "\n".join([f"GROQ_API_KEY={groq}", *FILLER]) + "\n"})
    text = "\n".join([f"GROQ_API_KEY={groq}", *FILLER, "MORE=1"]) + "\n"
    repo.commit({"a.env": text})
    copied = repo.commit({"b.env": text}, "copy")
    assert findings(repo) == [(first, "a.env", 1, groq), (copied, "b.env", 1, groq)]


def test_a_key_split_over_lines_around_a_change_is_joined(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    xai = synth("xai", RNG)
    head = [*FILLER[:80], "KEY = ("]
    repo.commit({"k.py": "\n".join([*head, '    "xai-"', ")", *FILLER[80:]]) + "\n"})
    added = repo.commit({"k.py": "\n".join([*head, '    "xai-"', f'    "{xai[4:44]}"',
                                            f'    "{xai[44:]}"', ")", *FILLER[80:]]) + "\n"})
    assert findings(repo) == [(added, "k.py", len(head) + 1, xai)]
