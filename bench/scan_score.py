"""Score keystead scan, gitleaks and detect-secrets on the blind labelled corpus.

    python -m bench.scan_score [--corpus tests/scan/blind] [--tools keystead,gitleaks,...]

The corpus's files tree is copied to a temp dir (so no enclosing git repository, ignore file or
config of this repository is seen by any tool) and its history is built there with
`build_history.py`; every tool scans both with its default rules (bench/scan_tools.py). The
labels and the matching rule are those of tests/scan/blind/FORMAT.md, restated:

- a finding (where, path, line) is a true positive for the first unmatched key label with the
  same where and path whose [first, last] lines contain the line;
- a further finding on an already matched key label is a duplicate (neither TP nor FP);
- anything else is a false positive, counted once per (where, path, line): two rules of one tool
  on the same line are one wrong alarm (the raw count is in the JSON as fp_findings);
- precision = TP / (TP + FP), recall = matched key labels / key labels, overall, per where
  (files, history), per provider and per place; each FP is put under the kind of the first
  negative label it overlaps, or "unlabelled".

Output: markdown tables on stdout (and bench/results/scan_score.md), JSON in
bench/results/scan_score.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import scan_peers
from bench.scan_tools import RUNNERS, TOOLS, Hit
from keystead import __version__

RESULTS = Path(__file__).parent / "results"
WHERES = ("files", "history")


@dataclass(frozen=True)
class KeyLabel:
    id: str
    where: str
    path: str
    first: int
    last: int
    provider: str
    place: str


@dataclass(frozen=True)
class NegativeLabel:
    id: str
    where: str
    path: str
    first: int
    last: int
    kind: str


@dataclass(frozen=True)
class Labels:
    keys: tuple[KeyLabel, ...]
    negatives: tuple[NegativeLabel, ...]


def parse_labels(data: dict[str, Any]) -> Labels:
    keys = tuple(KeyLabel(k["id"], k["where"], k["path"], int(k["lines"][0]),
                          int(k["lines"][1]), k["provider"], k["place"])
                 for k in data["keys"])
    negatives = tuple(NegativeLabel(n["id"], n["where"], n["path"], int(n["lines"][0]),
                                    int(n["lines"][1]), n["kind"])
                      for n in data.get("negatives", []))
    labels: list[KeyLabel | NegativeLabel] = [*keys, *negatives]
    for label in labels:
        if label.where not in WHERES or not 1 <= label.first <= label.last:
            raise ValueError(f"label {label.id}: bad where or lines")
    return Labels(keys, negatives)


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    duplicates: int = 0
    fp_findings: int = 0
    matched: set[str] = field(default_factory=set)
    false_positives: list[dict[str, Any]] = field(default_factory=list)


def _contains(label: KeyLabel | NegativeLabel, hit: Hit) -> bool:
    return (label.where == hit.where and label.path == hit.path
            and label.first <= hit.line <= label.last)


def match(labels: Labels, hits: Iterable[Hit]) -> Score:
    """Apply the matching rule to one tool's findings (in sorted order, so it is repeatable)."""
    score = Score()
    fp_places: set[tuple[str, str, int]] = set()
    for hit in sorted(hits):
        on = [k for k in labels.keys if _contains(k, hit)]
        free = [k for k in on if k.id not in score.matched]
        if free:
            score.matched.add(free[0].id)
            score.tp += 1
        elif on:
            score.duplicates += 1
        else:
            score.fp_findings += 1
            place = (hit.where, hit.path, hit.line)
            if place in fp_places:
                continue
            fp_places.add(place)
            score.fp += 1
            kind = next((n.kind for n in labels.negatives if _contains(n, hit)), "unlabelled")
            score.false_positives.append({"where": hit.where, "path": hit.path,
                                          "line": hit.line, "rule": hit.rule, "kind": kind})
    return score


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 3) if den else None


def _recall_by(labels: Sequence[KeyLabel], matched: set[str], attr: str) -> dict[str, Any]:
    totals = Counter(getattr(k, attr) for k in labels)
    found = Counter(getattr(k, attr) for k in labels if k.id in matched)
    return {name: {"found": found[name], "total": total, "recall": _ratio(found[name], total)}
            for name, total in sorted(totals.items())}


def summarise(labels: Labels, hits: Sequence[Hit]) -> dict[str, Any]:
    """Everything reported for one tool: overall, per where, per provider, per place, FPs."""
    def block(keys: Sequence[KeyLabel], score: Score) -> dict[str, Any]:
        found = sum(k.id in score.matched for k in keys)
        return {"tp": score.tp, "fp": score.fp, "fn": len(keys) - found,
                "duplicates": score.duplicates, "fp_findings": score.fp_findings,
                "precision": _ratio(score.tp, score.tp + score.fp),
                "recall": _ratio(found, len(keys)), "keys": len(keys)}

    overall = match(labels, hits)
    out = block(labels.keys, overall)
    out["by_where"] = {}
    for where in WHERES:
        keys = [k for k in labels.keys if k.where == where]
        out["by_where"][where] = block(keys, match(labels, [h for h in hits if h.where == where]))
    out["recall_by_provider"] = _recall_by(labels.keys, overall.matched, "provider")
    out["recall_by_place"] = _recall_by(labels.keys, overall.matched, "place")
    out["fp_by_negative_kind"] = dict(sorted(Counter(
        fp["kind"] for fp in overall.false_positives).items()))
    out["missed"] = [k.id for k in labels.keys if k.id not in overall.matched]
    out["false_positives"] = overall.false_positives
    return out


# --- markdown -------------------------------------------------------------------------------

def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(results: dict[str, dict[str, Any]]) -> str:
    tools = list(results)
    overall = []
    for tool in tools:
        for where, block in [("all", results[tool]), *results[tool]["by_where"].items()]:
            overall.append([tool, where, _fmt(block["precision"]), _fmt(block["recall"]),
                            str(block["tp"]), str(block["fp"]), str(block["fn"]),
                            str(block["duplicates"])])
    parts = [_table(["tool", "where", "precision", "recall", "TP", "FP", "FN", "duplicates"],
                    overall)]
    for attr, title in (("recall_by_provider", "provider"), ("recall_by_place", "place")):
        names = sorted({n for t in tools for n in results[t][attr]})
        rows = []
        for name in names:
            cells = []
            for tool in tools:
                got = results[tool][attr].get(name)
                cells.append("-" if got is None else
                             f"{_fmt(got['recall'])} ({got['found']}/{got['total']})")
            rows.append([name, *cells])
        parts.append(_table([f"recall by {title}", *tools], rows))
    kinds = sorted({k for t in tools for k in results[t]["fp_by_negative_kind"]})
    parts.append(_table(["false positives by negative kind", *tools],
                        [[kind, *(str(results[t]["fp_by_negative_kind"].get(kind, 0))
                                  for t in tools)] for kind in kinds]
                        + [["total", *(str(results[t]["fp"]) for t in tools)]]))
    return "\n\n".join(parts)


# --- run ------------------------------------------------------------------------------------

def prepare(corpus: Path, tmp: Path) -> tuple[Path, Path]:
    """The files tree copied to tmp/files and the history built in tmp/history."""
    files = tmp / "files"
    shutil.copytree(corpus / "files", files, symlinks=True)
    history = tmp / "history"
    subprocess.run([sys.executable, str(corpus / "build_history.py"), str(history)],
                   check=True, capture_output=True)
    return files, history


def run_tools(tools: Sequence[str], files: Path, history: Path
              ) -> tuple[dict[str, list[Hit]], dict[str, dict[str, float]]]:
    hits: dict[str, list[Hit]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for tool in tools:
        hits[tool], seconds[tool] = [], {}
        for where, target in (("files", files), ("history", history)):
            started = time.perf_counter()
            hits[tool] += RUNNERS[tool](target, history=where == "history")
            seconds[tool][where] = round(time.perf_counter() - started, 2)
            print(f"scan_score: {tool} {where}: {sum(h.where == where for h in hits[tool])} "
                  f"finding(s) in {seconds[tool][where]} s", file=sys.stderr)
    return hits, seconds


def keystead_version() -> str:
    """keystead's version and the commit of the tree it runs from (the scanner changes often)."""
    commit = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short",
                             "HEAD"], capture_output=True, text=True).stdout.strip()
    return f"{__version__} ({commit or 'not a git checkout'})"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scan_score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("tests/scan/blind"))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--json", type=Path, default=RESULTS / "scan_score.json")
    args = parser.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tool(s): {', '.join(sorted(unknown))}")
    labels = parse_labels(json.loads((args.corpus / "labels.json").read_text()))
    versions = scan_peers.versions() if set(tools) - {"keystead"} else {}
    versions["keystead"] = keystead_version()
    with tempfile.TemporaryDirectory(prefix="keystead-bench-scan-score-") as tmp:
        files, history = prepare(args.corpus, Path(tmp))
        hits, seconds = run_tools(tools, files, history)
    results = {tool: summarise(labels, hits[tool]) for tool in tools}
    table = render(results)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.with_suffix(".md").write_text(table + "\n")
    args.json.write_text(json.dumps({
        "corpus": str(args.corpus), "keys": len(labels.keys),
        "negatives": len(labels.negatives), "versions": versions, "seconds": seconds,
        "results": results,
    }, indent=2) + "\n")
    print(f"\nJSON: {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
