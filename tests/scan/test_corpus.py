"""Precision and recall of the detectors on the labelled corpus in tests/scan/corpus/.

The corpus files are realistic (Python, TS/JS, .env, YAML, JSON, Markdown, a notebook, shell
history, a log) with hard negatives written in literally (placeholders, redacted keys, digests,
UUIDs, a JWT, base64 images, keystead keys with a bad checksum). Each expected key is a
`⟪detector⟫` marker that the test replaces with a fresh synthetic key in that format; labels.tsv
lists them (file, line, detector).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from keystead.keys.format import KEY_PATTERN, parse_key
from keystead.scan.detectors import DETECTORS
from keystead.scan.scanner import scan_paths
from scan.synth import synth

CORPUS = Path(__file__).parent / "corpus"
MARKER = re.compile(r"⟪([a-z0-9-]+)⟫")

Label = tuple[str, int, str]


def labels() -> set[Label]:
    rows = set()
    for line in (CORPUS / "labels.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            name, number, detector = line.split("\t")
            rows.add((name, int(number), detector))
    return rows


def markers() -> set[Label]:
    found = set()
    for path in CORPUS.iterdir():
        if path.name == "labels.tsv":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found |= {(path.name, number, m.group(1)) for m in MARKER.finditer(line)}
    return found


def render(target: Path, seed: int) -> None:
    rng = random.Random(seed)
    for path in CORPUS.iterdir():
        if path.name != "labels.tsv":
            text = MARKER.sub(lambda m: synth(m.group(1), rng), path.read_text())
            (target / path.name).write_text(text)


def test_the_labels_list_every_marker_and_every_detector_has_one() -> None:
    assert labels() == markers()
    assert {d.id for d in DETECTORS} <= {detector for _, _, detector in labels()}


def test_the_corpus_keystead_look_alikes_have_bad_checksums() -> None:
    looks = [m.group() for p in CORPUS.iterdir() for m in KEY_PATTERN.finditer(p.read_text())]
    assert looks and all(parse_key(text) is None for text in looks)


@pytest.mark.parametrize("seed", [7, 2024, 31337])
def test_precision_and_recall_on_the_corpus(tmp_path: Path, seed: int) -> None:
    render(tmp_path, seed)
    expected = labels()
    found = {(Path(f.path).name, f.line, f.detector) for f in scan_paths([tmp_path])}
    true_positives = len(found & expected)
    precision = true_positives / len(found) if found else 1.0
    recall = true_positives / len(expected)
    files = sum(1 for p in CORPUS.iterdir() if p.name != "labels.tsv")
    print(f"\ncorpus seed {seed}: {files} files, {len(expected)} positives; "
          f"precision {precision:.3f} recall {recall:.3f}; "
          f"false positives {sorted(found - expected)}; missed {sorted(expected - found)}")
    assert precision >= 0.98
    assert recall >= 0.98


def test_each_detector_finds_random_keys_in_its_format() -> None:
    """500 fresh keys per detector, each in a line with the context it needs."""
    from keystead.scan.scanner import scan_text

    context = {"aws-secret-access-key": "aws_secret_access_key", "azure-openai": "AZURE_API_KEY",
               "deepseek": "DEEPSEEK_API_KEY", "together-legacy": "TOGETHER_API_KEY",
               "mistral": "MISTRAL_API_KEY", "cohere": "COHERE_API_KEY",
               "keystead-master-key": "KEYSTEAD_MASTER_KEY"}
    rng = random.Random(5)
    for detector in DETECTORS:
        lines = [f'{context.get(detector.id, "KEY")}="{synth(detector.id, rng)}"'
                 for _ in range(500)]
        found = [f for f in scan_text("\n".join(lines), "x") if f.detector == detector.id]
        assert len(found) >= 495, (detector.id, len(found))
