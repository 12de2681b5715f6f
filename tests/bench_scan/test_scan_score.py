"""The peer comparison's scoring rule and the mapping of each tool's report to (where, path, line),
on synthetic labels and findings: no scanner is run."""

from pathlib import Path

import pytest
from bench.scan_score import match, parse_labels, render, summarise
from bench.scan_tools import (
    Hit,
    detect_secrets_hits,
    first_per_path,
    gitleaks_hits,
    keystead_hits,
    relative,
)

LABELS = parse_labels({
    "keys": [
        {"id": "k1", "where": "files", "path": "svc/app.py", "lines": [3, 3],
         "provider": "openai", "place": "code-assignment", "secret": "s1"},
        {"id": "k2", "where": "files", "path": "svc/app.py", "lines": [10, 11],
         "provider": "mistral", "place": "line-continuation", "secret": "s2"},
        {"id": "k3", "where": "history", "path": "svc/ci.yml", "lines": [4, 4],
         "provider": "github", "place": "ci-file", "secret": "s3"},
        # two keys on one line: two findings there are two true positives
        {"id": "k4", "where": "files", "path": "svc/.env", "lines": [1, 1],
         "provider": "github", "place": "env-file", "secret": "s4"},
        {"id": "k5", "where": "files", "path": "svc/.env", "lines": [1, 1],
         "provider": "aws", "place": "env-file", "secret": "s5"},
    ],
    "negatives": [
        {"id": "n1", "where": "files", "path": "svc/app.py", "lines": [5, 5],
         "kind": "placeholder", "note": "your-key-here"},
        {"id": "n2", "where": "files", "path": "docs/a.md", "lines": [1, 2], "kind": "jwt",
         "note": "a JWT"},
    ],
})

HITS = [
    Hit("files", "svc/app.py", 3, "rule-a"),       # k1
    Hit("files", "svc/app.py", 3, "rule-b"),       # k1 again: duplicate
    Hit("files", "svc/app.py", 11, "rule-a"),      # k2, inside its line range
    Hit("history", "svc/app.py", 3, "rule-a"),     # right path and line, wrong where: FP
    Hit("files", "svc/.env", 1, "rule-a"),         # k4
    Hit("files", "svc/.env", 1, "rule-b"),         # k5
    Hit("files", "svc/app.py", 5, "rule-a"),       # placeholder: one FP ...
    Hit("files", "svc/app.py", 5, "rule-b"),       # ... for two rules on the line
    Hit("files", "docs/a.md", 2, "jwt"),           # FP on a JWT
    Hit("history", "svc/ci.yml", 5, "rule-a"),     # a line off the key: FP, k3 missed
]


def test_matching_counts_tp_duplicates_and_fp_per_place() -> None:
    score = match(LABELS, HITS)
    assert score.matched == {"k1", "k2", "k4", "k5"}
    assert (score.tp, score.duplicates, score.fp, score.fp_findings) == (4, 1, 4, 5)
    # the order the tool printed its findings in does not change the score
    again = match(LABELS, list(reversed(HITS)))
    assert (again.matched, again.tp, again.fp) == (score.matched, score.tp, score.fp)


def test_summary_overall_per_where_provider_place_and_negative_kind() -> None:
    result = summarise(LABELS, HITS)
    assert (result["tp"], result["fp"], result["fn"]) == (4, 4, 1)
    assert result["precision"] == 0.5 and result["recall"] == 0.8
    assert result["by_where"]["files"] == {
        "tp": 4, "fp": 2, "fn": 0, "duplicates": 1, "fp_findings": 3, "precision": 0.667,
        "recall": 1.0, "keys": 4}
    assert result["by_where"]["history"]["recall"] == 0.0
    assert result["by_where"]["history"]["precision"] == 0.0
    assert result["recall_by_provider"]["github"] == {"found": 1, "total": 2, "recall": 0.5}
    assert result["recall_by_place"]["env-file"]["recall"] == 1.0
    assert result["fp_by_negative_kind"] == {"jwt": 1, "placeholder": 1, "unlabelled": 2}
    assert result["missed"] == ["k3"]


def test_no_findings_scores_zero_recall_and_no_precision() -> None:
    result = summarise(LABELS, [])
    assert result["recall"] == 0.0 and result["precision"] is None
    table = render({"nothing": result, "everything": summarise(LABELS, HITS)})
    assert "| nothing | all | - | 0.000 | 0 | 0 | 5 | 0 |" in table
    assert "| everything | all | 0.500 | 0.800 | 4 | 4 | 1 | 1 |" in table
    assert "| placeholder | 0 | 1 |" in table


def test_labels_with_a_bad_where_or_line_range_are_refused() -> None:
    for bad in ({"where": "tree", "lines": [1, 1]}, {"where": "files", "lines": [3, 2]},
                {"where": "files", "lines": [0, 1]}):
        with pytest.raises(ValueError, match="k9"):
            parse_labels({"keys": [{"id": "k9", "path": "a", "provider": "aws",
                                    "place": "other", **bad}]})


def test_each_tools_paths_become_relative_posix_paths(tmp_path: Path) -> None:
    assert relative("./svc/.env", tmp_path) == "svc/.env"
    assert relative(str(tmp_path / "svc" / "app.py"), tmp_path) == "svc/app.py"
    assert relative("svc\\win.py", tmp_path) == "svc/win.py"
    assert keystead_hits({"findings": [{"path": "svc/.env", "line": 2, "detector": "github"}]},
                         tmp_path, "files") == [Hit("files", "svc/.env", 2, "github")]
    gitleaks = [{"File": str(tmp_path / "svc/app.py"), "StartLine": 3, "EndLine": 4,
                 "RuleID": "generic-api-key"}]
    assert gitleaks_hits(gitleaks, tmp_path, "files") == [
        Hit("files", "svc/app.py", 3, "generic-api-key")]
    ds = {"svc/app.py": [{"type": "Secret Keyword", "line_number": 3, "hashed_secret": "h"}]}
    assert detect_secrets_hits(ds, tmp_path, "files") == [
        Hit("files", "svc/app.py", 3, "Secret Keyword")]


def test_detect_secrets_history_keeps_each_secret_once_per_path_at_its_first_commit() -> None:
    order = [("c1", "a.py", "b1"), ("c2", "a.py", "b2"), ("c2", "b.py", "b2"),
             ("c3", "a.py", "b1")]
    pairs = list(dict.fromkeys((p, b) for _, p, b in order))
    secret = {"type": "Secret Keyword", "hashed_secret": "h1"}
    results = {
        "0/a.py": [{**secret, "line_number": 3}],
        # the same secret, moved down by a later version of a.py: not reported again
        "1/a.py": [{**secret, "line_number": 5},
                   {"type": "AWS Access Key", "hashed_secret": "h2", "line_number": 1}],
        "2/b.py": [{**secret, "line_number": 5}],
    }
    assert first_per_path(order, pairs, results, Path("/tmp")) == [
        Hit("history", "a.py", 3, "Secret Keyword"),
        Hit("history", "a.py", 1, "AWS Access Key"),
        Hit("history", "b.py", 5, "Secret Keyword"),
    ]
