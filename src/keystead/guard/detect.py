"""What a guardrail looks for in a prompt, and how it is masked.

Secrets: the scanner's detectors (provider keys, keystead keys with a valid checksum, ...).
Personal data: e-mail addresses, phone numbers, payment card numbers (Luhn-checked) and IBANs
(mod-97-checked): the checks keep order numbers and random digits out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from keystead.scan.detectors import mask as mask_secret
from keystead.scan.scanner import scan_text

__all__ = ["PII_KINDS", "Span", "find_pii", "find_secrets", "mask", "redact"]


@dataclass(frozen=True, slots=True)
class Span:
    kind: str  # a detector id ("openai-project", "email", "card", ...)
    start: int
    end: int


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and _luhn(digits) and len(set(digits)) > 1


def _iban(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


_DATE = re.compile(r"(?:19|20)\d{2}[-./]\d{1,2}[-./]\d{1,2}")


def _phone(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    if _DATE.match(text):  # 2024-11-23 (12 30): a date, not a number to call
        return False
    # Without a country code, at least 9 digits: shorter runs are too often something else.
    least = 8 if text.startswith("+") else 9
    return least <= len(digits) <= 15 and len(set(digits)) > 2


_PII: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None], ...] = (
    ("email", re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+"),
     None),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), _iban),
    ("card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card),
    # International (+CC ...) or with separators, so that plain numbers (ids, amounts) stay out.
    ("phone", re.compile(
        r"(?<![\w+.])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"
        r"|\(\d{2,4}\)[ .-]?\d{2,4}(?:[ .-]\d{2,4}){1,3}"
        r"|\d{2,4}(?:[ .-]\d{2,4}){2,4})(?![\w.-])"), _phone),
)
PII_KINDS = tuple(kind for kind, _pattern, _check in _PII)


def find_pii(text: str) -> list[Span]:
    spans: list[Span] = []
    for kind, pattern, check in _PII:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < s.end and s.start < end for s in spans):
                continue  # an IBAN's digits are not also a card number
            if check is None or check(match.group()):
                spans.append(Span(kind, start, end))
    return spans


def find_secrets(text: str) -> list[Span]:
    spans: list[Span] = []
    findings = scan_text(text, "<prompt>")
    # The scanner reports by line; a prompt wants character offsets, once per secret.
    for secret, detector in {(finding.secret, finding.detector) for finding in findings}:
        start = text.find(secret)
        while start != -1:
            spans.append(Span(detector, start, start + len(secret)))
            start = text.find(secret, start + 1)
    # A key the scanner read joined, unescaped or unwrapped is not in the text as one string:
    # its extent is taken from where it starts, so that a split key is masked (or blocked) too.
    hidden = [finding for finding in findings if finding.secret not in text]
    if hidden:
        starts = _line_starts(text)
        spans += (_extent(text, starts, finding.line, finding.column, finding.secret,
                          finding.detector) for finding in hidden)
    return sorted(spans, key=lambda span: span.start)


# How far past its start a split key's pieces may reach: quotes, `+`, escapes and line breaks
# between them add a few characters per piece; a prompt's long line is not masked to its end.
_PIECES_REACH = 2


def _line_starts(text: str) -> list[int]:
    """Offsets of the lines the scanner numbers (it splits at \n)."""
    starts = [0]
    position = text.find("\n")
    while position != -1:
        starts.append(position + 1)
        position = text.find("\n", position + 1)
    return starts


def _extent(text: str, starts: list[int], line: int, column: int, secret: str,
            kind: str) -> Span:
    """From the key's first character to the end of its last piece: the rest of its line,
    bounded, and further while its last characters stand whole on a later line (wrapped)."""
    begin = min(starts[line - 1] + column - 1, len(text))
    reach = begin + _PIECES_REACH * len(secret) + 32
    line_end = text.find("\n", begin)
    end = min(reach, len(text) if line_end == -1 else line_end)
    tail = text.find(secret[-8:], begin, reach)
    if tail != -1:
        end = max(end, tail + 8)
    return Span(kind, begin, max(end, begin + 1))


def mask(text: str, spans: list[Span]) -> str:
    """`text` with each span replaced by [REDACTED:<kind>], so the model still reads that
    something was there."""
    out: list[str] = []
    position = 0
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < position:
            continue
        out += (text[position:span.start], f"[REDACTED:{span.kind}]")
        position = span.end
    out.append(text[position:])
    return "".join(out)


def redact(text: str | None) -> str | None:
    """Free text an operator typed (an incident or revocation reason, a description), with each
    secret the scanner knows shown masked as the scanner prints it (`sk-pro…AbCd`): enough to
    tell which key it was, not to use it. Applied before the text is stored, logged or sent."""
    if not text:
        return text
    spans = find_secrets(text)
    out: list[str] = []
    position = 0
    for span in spans:
        if span.start < position:
            continue
        out += (text[position:span.start], mask_secret(text[span.start:span.end]))
        position = span.end
    out.append(text[position:])
    return "".join(out)
