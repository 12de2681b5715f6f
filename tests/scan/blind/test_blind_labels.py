"""The blind corpus's labels are true to its files: every key is where its label says, in its
provider's public format, checksums hold where they should and fail where they should not, and
the committed files are what generate.py writes. Nothing here uses the scanner."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_history  # noqa: E402
import generate  # noqa: E402
from corpus_core import (  # noqa: E402
    NEG_KINDS,
    NO_PREFIX,
    PLACES,
    PROVIDERS,
    github_checksum,
)

from keystead.keys.format import parse_key  # noqa: E402
from keystead.keys.tokens import TokenClaims  # noqa: E402

LABELS = json.loads((HERE / "labels.json").read_text(encoding="utf-8"))
HISTORY = json.loads((HERE / "history.json").read_text(encoding="utf-8"))
FILES = HERE / "files"
SPLIT_PLACES = ("concatenated", "line-continuation")

# The public formats, as the corpus was written from them.
B64U = r"[A-Za-z0-9_-]"
FORMATS = {
    "openai": rf"sk-(?:proj|svcacct|admin)-(?:{B64U}{{74}}T3BlbkFJ{B64U}{{74}}|{B64U}{{58}}T3BlbkFJ"
              rf"{B64U}{{58}})|sk-[A-Za-z0-9]{{20}}T3BlbkFJ[A-Za-z0-9]{{20}}",
    "anthropic": rf"sk-ant-(?:api03|admin01)-{B64U}{{93}}AA",
    "google-ai": rf"AIza{B64U}{{35}}",
    "azure-openai": r"[0-9a-f]{32}",
    "mistral": r"[A-Za-z0-9]{32}",
    "cohere": r"[A-Za-z0-9]{40}",
    "deepseek": r"sk-[0-9a-f]{32}",
    "together": rf"tgp_v1_{B64U}{{43}}|[0-9a-f]{{64}}",
    "groq": r"gsk_[A-Za-z0-9]{52}",
    "xai": r"xai-[A-Za-z0-9]{80}",
    "perplexity": r"pplx-[A-Za-z0-9]{48}",
    "huggingface": r"hf_[A-Za-z]{34}",
    "replicate": r"r8_[A-Za-z0-9]{37}",
    "fireworks": r"fw_[A-Za-z0-9]{24}",
    "openrouter": r"sk-or-v1-[0-9a-f]{64}",
    "langsmith": r"lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10}",
    "github": r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
    "aws": r"(?:AKIA|ASIA)[A-Z2-7]{16}|[A-Za-z0-9+/]{40}",
    "keystead": rf"ksk_[a-z2-7]{{8}}[A-Za-z0-9]{{38}}|ksa_{B64U}{{43}}|kst_{B64U}+\.{B64U}{{43}}"
                rf"|{B64U}{{43}}=",
    "slack-webhook": r"https://hooks\.slack\.com/services/T[A-Z0-9]{8,10}/B[A-Z0-9]{8,10}/"
                     r"[A-Za-z0-9]{24}",
    "discord-webhook": rf"https://discord\.com/api/webhooks/\d{{17,19}}/{B64U}{{68}}",
    "teams-webhook": r"https://[a-z]+\.webhook\.office\.com/webhookb2/[0-9a-f-]{36}@[0-9a-f-]{36}"
                     rf"/IncomingWebhook/[0-9a-f]{{32}}/[0-9a-f-]{{36}}(?:/V2{B64U}{{47}})?",
}
# Prefixed shapes, to prove nothing key-shaped in the corpus is left unlabelled.
PREFIXED = re.compile(
    rf"(?<![A-Za-z0-9_-])(?:sk-(?:proj|svcacct|admin|ant|or)-{B64U}{{20,}}|sk-[A-Za-z0-9]{{20,}}"
    rf"|AIza{B64U}{{30,}}|gsk_[A-Za-z0-9]{{30,}}|xai-[A-Za-z0-9]{{30,}}|pplx-[A-Za-z0-9]{{30,}}"
    rf"|hf_[A-Za-z]{{30,}}|r8_[A-Za-z0-9]{{30,}}|fw_[A-Za-z0-9]{{20,}}|tgp_v1_{B64U}{{30,}}"
    rf"|lsv2_(?:pt|sk)_[0-9a-f]{{32}}|gh[pousr]_[A-Za-z0-9]{{36}}|github_pat_\w{{60,}}"
    rf"|(?:AKIA|ASIA)[A-Z2-7]{{16}}|ksk_[a-z2-7]{{8}}\w{{38}}|ksa_{B64U}{{40,}}|kst_{B64U}+\."
    rf"|hooks\.slack\.com/services/T\w+/B\w+/\w+|discord\.com/api/webhooks/\d+/{B64U}+"
    rf"|webhook\.office\.com/webhookb2/\S+)")
CLASSIC_GH = re.compile(r"gh[pousr]_([A-Za-z0-9]{30})([A-Za-z0-9]{6})(?![A-Za-z0-9])")
KSK = re.compile(r"ksk_[a-z2-7]{8}[A-Za-z0-9]{38}(?![A-Za-z0-9])")


def _file_lines(label: dict[str, object]) -> list[str]:
    assert label["where"] == "files"
    return (FILES / str(label["path"])).read_text(encoding="utf-8").split("\n")


def _versions() -> dict[str, list[str]]:
    """Every version each history path had, in commit order."""
    out: dict[str, list[str]] = {}
    for commit in HISTORY:
        for path, text in commit["files"].items():
            if text is not None:
                out.setdefault(path, []).append(text)
    return out


def _joined_in(secret: str, text: str) -> bool:
    """The secret, written in pieces of 4+ characters, in order, in the text."""
    at = 0
    rest = secret
    pieces = 0
    while rest:
        for size in range(len(rest), 3, -1):
            found = text.find(rest[:size], at)
            if found >= 0:
                at, rest, pieces = found + size, rest[size:], pieces + 1
                break
        else:
            return False
    return pieces <= 4


def _span(lines: list[str], label: dict[str, object]) -> str:
    first, last = label["lines"]  # type: ignore[misc]
    assert 1 <= first <= last <= len(lines), label
    return "\n".join(lines[first - 1:last])


def test_label_ids_are_unique_and_fields_valid() -> None:
    ids = [lab["id"] for lab in LABELS["keys"] + LABELS["negatives"]]
    assert len(ids) == len(set(ids))
    for lab in LABELS["keys"]:
        assert lab["provider"] in PROVIDERS and lab["place"] in PLACES, lab
        assert lab["where"] in ("files", "history") and lab["secret"], lab
    for lab in LABELS["negatives"]:
        assert lab["kind"] in NEG_KINDS and lab["note"], lab
        assert lab["where"] in ("files", "history"), lab


def test_counts_meet_the_brief() -> None:
    keys, negs = LABELS["keys"], LABELS["negatives"]
    assert 200 <= len(keys) <= 270 and 450 <= len(negs) <= 600
    providers = Counter(k["provider"] for k in keys)
    places = Counter(k["place"] for k in keys)
    for provider in PROVIDERS:
        assert providers[provider] >= (12 if provider in NO_PREFIX else 6), provider
    for place in PLACES:
        assert places[place] >= 4, place
    assert Counter(k["where"] for k in keys)["history"] >= 20


def test_every_file_key_is_in_its_lines_in_its_format() -> None:
    for lab in (k for k in LABELS["keys"] if k["where"] == "files"):
        text = _span(_file_lines(lab), lab)
        secret = lab["secret"]
        assert re.fullmatch(FORMATS[lab["provider"]], secret), lab
        if lab["place"] in SPLIT_PLACES:
            assert secret not in text and _joined_in(secret, text), lab
            assert lab["place"] != "line-continuation" or lab["lines"][1] > lab["lines"][0], lab
        else:
            assert lab["lines"][0] == lab["lines"][1] and secret in text, lab


def test_every_history_key_is_in_the_version_that_introduced_it() -> None:
    versions = _versions()
    for lab in (k for k in LABELS["keys"] if k["where"] == "history"):
        assert re.fullmatch(FORMATS[lab["provider"]], lab["secret"]), lab
        texts = versions[lab["path"]]
        first = next(t for t in texts if _joined_in(lab["secret"], t))
        assert _joined_in(lab["secret"], _span(first.split("\n"), lab)), lab


def test_negative_lines_exist() -> None:
    versions = _versions()
    for lab in LABELS["negatives"]:
        lines = (_file_lines(lab) if lab["where"] == "files"
                 else max(versions[lab["path"]], key=len).split("\n"))
        first, last = lab["lines"]
        assert 1 <= first <= last <= len(lines), lab


def test_github_checksums_hold_for_keys_and_fail_for_bad_checksum_negatives() -> None:
    classic = [k for k in LABELS["keys"] if k["provider"] == "github"
               and not k["secret"].startswith("github_pat_")]
    assert len(classic) >= 6
    for lab in classic:
        m = CLASSIC_GH.fullmatch(lab["secret"])
        assert m and github_checksum(m.group(1)) == m.group(2), lab
    bad = [n for n in LABELS["negatives"] if n["kind"] == "bad-checksum"]
    assert len(bad) >= 15
    for lab in bad:
        text = _span(_file_lines(lab), lab) if lab["where"] == "files" else None
        if text is None:
            text = next(t for t in _versions()[lab["path"]])
            text = _span(text.split("\n"), lab)
        tokens = CLASSIC_GH.findall(text) + [(m, None) for m in KSK.findall(text)]
        assert tokens, lab
        for body, check in tokens:
            if check is None:
                assert parse_key(body) is None, lab
            else:
                assert github_checksum(body) != check, lab


def test_keystead_secrets_are_well_formed() -> None:
    for lab in (k for k in LABELS["keys"] if k["provider"] == "keystead"):
        secret = lab["secret"]
        if secret.startswith("ksk_"):
            assert parse_key(secret) is not None, lab
        elif secret.startswith("kst_"):
            payload = secret[4:].split(".")[0]
            TokenClaims.from_json(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        elif secret.startswith("ksa_"):
            assert re.fullmatch(r"ksa_[A-Za-z0-9_-]{43}", secret), lab
        else:
            assert len(base64.urlsafe_b64decode(secret)) == 32, lab


def test_no_prefixed_key_shape_is_left_unlabelled() -> None:
    covered: dict[str, set[int]] = {}
    for lab in LABELS["keys"] + LABELS["negatives"]:
        if lab["where"] == "files":
            first, last = lab["lines"]
            covered.setdefault(lab["path"], set()).update(range(first, last + 1))
    for path in sorted(FILES.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(FILES).as_posix()
        for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
            if PREFIXED.search(line):
                assert n in covered.get(rel, set()), f"{rel}:{n} unlabelled: {line[:120]}"


def test_generator_rebuilds_the_committed_corpus(tmp_path: Path) -> None:
    generate.write(tmp_path)
    for name in ("labels.json", "history.json"):
        assert (tmp_path / name).read_bytes() == (HERE / name).read_bytes(), name
    built = sorted(p.relative_to(tmp_path / "files") for p in (tmp_path / "files").rglob("*")
                   if p.is_file())
    committed = sorted(p.relative_to(FILES) for p in FILES.rglob("*") if p.is_file())
    assert built == committed
    for rel in built:
        assert (tmp_path / "files" / rel).read_bytes() == (FILES / rel).read_bytes(), rel


@pytest.mark.timeout(60)
def test_history_builds_into_a_repository_holding_every_history_key(tmp_path: Path) -> None:
    count = build_history.build(tmp_path / "repo")
    assert 40 <= count <= 60
    log = subprocess.run(["git", "log", "-p", "--format=%H %s"], cwd=tmp_path / "repo",
                         check=True, capture_output=True, text=True).stdout
    assert len(re.findall(r"^[0-9a-f]{40} ", log, re.M)) == count
    for lab in (k for k in LABELS["keys"] if k["where"] == "history"):
        assert _joined_in(lab["secret"], log), lab
    tree = subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD"], cwd=tmp_path / "repo",
                          check=True, capture_output=True, text=True).stdout.split()
    assert ".env" not in tree and ".gitignore" in tree
