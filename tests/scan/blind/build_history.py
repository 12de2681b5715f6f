"""Turn history.json into a real git repository, the same bytes every time.

    python tests/scan/blind/build_history.py DIR

history.json is an ordered list of commits, each {"message", "files": {path: text | null}};
null deletes the file. Author, committer and dates are fixed (one hour apart), so the commit
hashes depend only on the data and git's object format. Paths are added with -f: a commit that
names a file covered by .gitignore (a .env committed by accident) commits it all the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HISTORY = Path(__file__).resolve().parent / "history.json"
START = 1_714_557_600  # 2024-05-01T10:00:00Z
AUTHOR = ("Dana Developer", "dana@triage-bot.example")


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> None:
    config = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false",
              "-c", "init.defaultBranch=main", "-c", "core.autocrlf=false"]
    subprocess.run(["git", *config, *args], cwd=repo, check=True, env=env,
                   stdout=subprocess.DEVNULL)


def build(target: Path, history: Path = HISTORY) -> int:
    commits = json.loads(history.read_text(encoding="utf-8"))
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise SystemExit(f"{target} is not empty")
    git(target, "init", "-q")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    for n, commit in enumerate(commits):
        for rel, text in commit["files"].items():
            path = target / rel
            if text is None:
                git(target, "rm", "-q", "--", rel)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
            git(target, "add", "-f", "--", rel)
        date = f"{START + 3600 * n} +0000"
        env = dict(base_env, GIT_AUTHOR_NAME=AUTHOR[0], GIT_AUTHOR_EMAIL=AUTHOR[1],
                   GIT_COMMITTER_NAME=AUTHOR[0], GIT_COMMITTER_EMAIL=AUTHOR[1],
                   GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
        git(target, "commit", "-q", "--allow-empty", "-m", commit["message"], env=env)
    return len(commits)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    count = build(Path(sys.argv[1]))
    print(f"{count} commits in {sys.argv[1]}")


if __name__ == "__main__":
    main()
