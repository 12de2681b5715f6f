"""Build the blind corpus: the repositories under files/, history.json and labels.json.

    python tests/scan/blind/generate.py            # rewrite the committed corpus
    python tests/scan/blind/generate.py --out DIR  # write it elsewhere (the test compares)
    python tests/scan/blind/generate.py --stats    # counts per provider, place, negative kind

Written from the public formats of provider keys and the places leaks are found, without the
scanner's detectors, tests or docs in view. Every random part comes from one random.Random(SEED).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import history
import repos_data
import repos_extra
import repos_infra
import repos_java
import repos_keystead
import repos_node
import repos_notebooks
import repos_ops
import repos_python
import repos_rust
from corpus_core import Corpus

SEED = 16_05_2024
HERE = Path(__file__).resolve().parent


def build() -> tuple[Corpus, list[dict[str, object]]]:
    c = Corpus(SEED)
    for repo in (repos_python, repos_node, repos_notebooks, repos_infra, repos_java, repos_ops,
                 repos_data, repos_rust, repos_keystead, repos_extra):
        repo.build(c)
    commits = history.build(c)
    c.check_all_used()
    return c, commits


def labels(c: Corpus) -> dict[str, list[dict[str, object]]]:
    return {"keys": sorted(c.key_labels, key=lambda x: str(x["id"])),
            "negatives": sorted(c.neg_labels, key=lambda x: str(x["id"]))}


def write(out: Path) -> None:
    c, commits = build()
    files = out / "files"
    if files.exists():
        shutil.rmtree(files)
    for rel, text in sorted(c.files.items()):
        path = files / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (out / "history.json").write_text(json.dumps(commits, indent=1) + "\n", encoding="utf-8")
    (out / "labels.json").write_text(json.dumps(labels(c), indent=1) + "\n", encoding="utf-8")


def stats() -> str:
    c, _ = build()
    out = [f"seed {SEED}: {len(c.key_labels)} keys, {len(c.neg_labels)} negatives, "
           f"{len(c.files)} files"]
    for title, field, rows in (("provider", "provider", c.key_labels),
                               ("place", "place", c.key_labels),
                               ("negative kind", "kind", c.neg_labels),
                               ("where (keys)", "where", c.key_labels)):
        counts = Counter(str(r[field]) for r in rows)
        out.append(f"\n| {title} | count |\n|---|---|")
        out += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--stats", action="store_true")
    args = parser.parse_args()
    if args.stats:
        print(stats())
    else:
        write(args.out)


if __name__ == "__main__":
    main()
