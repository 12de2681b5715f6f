"""The tokenizer-free estimate against the real tokenizer (o200k_base, the exact counter the
tests still ship), on the kinds of text a gateway carries."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from keystead.usage.approx_tokens import chat_prompt_tokens, text_tokens
from keystead.usage.tokens import count_chat_prompt, count_text

ROOT = Path(__file__).resolve().parents[2]
PROSE = [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))]
CODE = [p.read_text() for p in sorted((ROOT / "src/keystead/pipeline").glob("*.py"))]
OTHER_SCRIPTS = [
    "日本語のテキストを数える。東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。" * 10,
    "人工智能正在改变世界。大型语言模型可以生成文本、翻译语言并回答问题。" * 10,
    "Привет, как дела? Это пример текста на русском языке для подсчёта токенов. " * 10,
]
JSON = [json.dumps({"city": "Paris", "days": list(range(n)), "notes": "a b c " * n})
        for n in range(1, 30)]


def _ratio(texts: list[str]) -> float:
    return sum(text_tokens(t) for t in texts) / sum(count_text(t, "gpt-4o") for t in texts)


@pytest.mark.parametrize("texts", [PROSE, CODE, OTHER_SCRIPTS, JSON],
                         ids=["prose", "code", "cjk-cyrillic", "json"])
def test_within_ten_percent_of_the_tokenizer_in_bulk(texts: list[str]) -> None:
    assert texts
    assert 0.9 <= _ratio(texts) <= 1.1


def test_single_sentences_are_close_to_the_tokenizer() -> None:
    sentences = [s for doc in PROSE for s in doc.split(". ") if 5 < len(s) < 200]
    ratios = [text_tokens(s) / count_text(s, "gpt-4o") for s in sentences]
    assert 0.95 <= statistics.median(ratios) <= 1.05
    assert sum(0.75 <= r <= 1.25 for r in ratios) >= 0.9 * len(ratios)


def test_a_chat_prompt_follows_openais_recipe() -> None:
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Hi"}]},
                "not a message"]
    assert chat_prompt_tokens(messages) == 3 + (3 + 1 + 3) + (3 + 1 + 1 + 1 + 1)
    real = count_chat_prompt(messages, "gpt-4o")
    assert abs(chat_prompt_tokens(messages) - real) <= 2
    assert chat_prompt_tokens(None) == 0
    assert chat_prompt_tokens([]) == 3


def test_edges() -> None:
    assert text_tokens("") == 0
    assert text_tokens(" ") == 1
    assert text_tokens("a" * 7000) == 1000  # no piece is ever free
    assert text_tokens("🎉" * 5) >= 4


def test_estimating_loads_no_tokenizer() -> None:
    # The point of it: the first broken stream must not load tiktoken's 76 MB of tables.
    probe = ("import sys\n"
             "from keystead.usage.estimate import estimate_chat, estimate_responses\n"
             "from keystead.pipeline import messages\n"
             "estimate_chat('gpt-4o', b'[{\"role\":\"user\",\"content\":\"hi\"}]', None, "
             "streamed='Once upon a')\n"
             "estimate_responses('gpt-4.1', b'\"hi\"', 'ok')\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tiktoken'))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"
