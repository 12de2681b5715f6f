"""The detectors: one row per credential format, and the checks that keep false positives out.

Each detector has a compiled regex whose named group `secret` is the credential, bounded on both
sides (a match inside a longer token, such as a base64 blob, is not a finding). A match is a
finding only if:

- its random part (the text after the fixed prefix) is not a placeholder: `xxxx`, `example`,
  `your-key-here`, `${VAR}`, runs of one character, counting sequences;
- that random part has enough Shannon entropy for its length and alphabet;
- the detector's own validator agrees (the keystead checksum, mixed case where a hex digest would
  otherwise match, ...);
- for formats without a distinctive prefix (Azure OpenAI, Mistral, Cohere, DeepSeek, Together's
  legacy keys, AWS secret keys) a context word is on the same or a neighbouring line.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from keystead.keys.format import parse_key

__all__ = ["DETECTORS", "KEY_WORD", "Detector", "entropy", "is_placeholder", "mask"]

# Characters that continue a token: a match touching one of them is part of something longer.
_LEFT = r"(?<![A-Za-z0-9_+/-])"
_RIGHT = r"(?![A-Za-z0-9_+/-])"


@dataclass(frozen=True, slots=True)
class Detector:
    id: str
    provider: str
    description: str  # the format, as documented in docs/scanner.md
    pattern: re.Pattern[str]  # the named group `secret` is the credential
    prefix_len: int  # length of the fixed prefix: the rest is the random part
    min_entropy: float  # Shannon entropy (bits per character) of the random part
    context: re.Pattern[str] | None = None  # must match the line or a neighbouring one
    validate: Callable[[str], bool] | None = None
    # A digest label right before the match (`sha256:`, `"md5": "`): a hash, not a key.
    not_after: re.Pattern[str] | None = None

    def accepts(self, secret: str) -> bool:
        body = secret[self.prefix_len:]
        if is_placeholder(secret) or entropy(body) < self.min_entropy:
            return False
        return self.validate is None or self.validate(secret)


_DIGEST_LABEL = re.compile(
    r"(?i)(?:sha\w*|md5|hash|digest|checksum|integrity|etag|commit|revision|rev)\W{0,4}$")


# With a context word, the line of the match must also say it holds a credential.
KEY_WORD = re.compile(r"(?i)key|secret|token|passw|credential|auth|bearer")


def _rx(body: str) -> re.Pattern[str]:
    return re.compile(f"{_LEFT}(?P<secret>{body}){_RIGHT}")


def _ctx(words: str) -> re.Pattern[str]:
    return re.compile(words, re.IGNORECASE)


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in Counter(text).values())


_PLACEHOLDER_WORDS = ("example", "dummy", "placeholder", "redacted", "sample", "your", "xxxx",
                      "***", "...", "…", "${", "<", ">", "{{", "changeme", "insert", "fake",
                      "replace", "notreal", "test_key", "0123456789", "123456789", "abcdefghij")
_RUN = re.compile(r"(.)\1{5,}")  # six or more of one character


def is_placeholder(secret: str) -> bool:
    # Placeholders are written in one case (`your_key`, `YOUR_KEY`, `Example`); checking those
    # spellings, not every mix of cases, keeps random bodies from tripping on a short word.
    for word in _PLACEHOLDER_WORDS:
        if word in secret or word.upper() in secret or word.capitalize() in secret:
            return True
    return _RUN.search(secret) is not None


def mask(secret: str) -> str:
    """First 6 characters, an ellipsis, last 4: enough to find the key, not to use it."""
    if len(secret) <= 12:
        return secret[:2] + "…"
    return f"{secret[:6]}…{secret[-4:]}"


def _mixed_case(secret: str) -> bool:
    # Hex digests, and most generated identifiers, are one case; these keys are not.
    return any(c.isupper() for c in secret) and any(c.islower() for c in secret)


def _mixed_case_and_digit(secret: str) -> bool:
    """What a random base62 string of 32 or more characters almost always has (a digit is
    missing from 1 in 250) and a camelCase identifier seldom does."""
    return _mixed_case(secret) and any(c.isdigit() for c in secret)


def _random_looking(secret: str) -> bool:
    """Mixed case, and a digit or the entropy of random letters (4.0 bits: camelCase words
    stay under it)."""
    return _mixed_case(secret) and (any(c.isdigit() for c in secret) or entropy(secret) >= 4.0)


def _hex_with_letters_and_digits(secret: str) -> bool:
    body = secret.split("-")[-1]
    return any(c.isdigit() for c in body) and any(c.isalpha() for c in body)


def _keystead(secret: str) -> bool:
    return parse_key(secret) is not None


def _keystead_token(secret: str) -> bool:
    """A short-lived token's payload is base64url JSON with its token id, parent key and expiry:
    checked offline, like a key's checksum (no signing secret needed)."""
    payload = secret[len("kst_"):].split(".", 1)[0]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, RecursionError):  # RecursionError: a hostile prompt's nested payload
        return False
    return isinstance(claims, dict) and {"t", "k", "e"} <= claims.keys()


def _master_key(secret: str) -> bool:
    """32 bytes once decoded, with the mix of a random key (not `AAAA...`, not a word)."""
    try:
        raw = base64.urlsafe_b64decode(secret.replace("+", "-").replace("/", "_").rstrip("=")
                                       + "=")
    except ValueError:
        return False
    return len(raw) == 32 and _mixed_case(secret)


_B62 = "A-Za-z0-9"
_URLSAFE = "A-Za-z0-9_-"

# `KEYSTEAD_MASTER_KEY=<key>` as .env, shell (`export`), YAML and docker-compose write it, quoted
# or not, and keystead.yaml's `master_key:`; the secret is the 44-character base64 value (43 and
# `=`, or 43 unpadded). `${KEYSTEAD_MASTER_KEY}` and an empty value have no such value.
_MASTER_KEY_LINE = re.compile(
    r"(?:KEYSTEAD_MASTER_KEY|(?<![\w.-])master_key)[\"']?\s*[:=]\s*[\"']?"
    r"(?P<secret>[A-Za-z0-9_+/-]{43}=?)(?![A-Za-z0-9_+/=-])")

DETECTORS: tuple[Detector, ...] = (
    Detector("keystead", "keystead", "ksk_ + 8 base32 id + 32 base62 + 6-char CRC32 checksum",
             _rx(r"ksk_[a-z2-7]{8}[A-Za-z0-9]{38}"), 4, 3.5, validate=_keystead),
    Detector("keystead-admin-token", "keystead",
             "ksa_ (or, written by older versions, kst_admin_) + 43 base64url characters",
             _rx(rf"(?:ksa_|kst_admin_)[{_URLSAFE}]{{43}}"), 4, 4.0, validate=_mixed_case),
    Detector("keystead-token", "keystead",
             "kst_ + base64url JSON claims (t, k, e) + . + 43 base64url HMAC-SHA256 signature",
             _rx(rf"kst_eyJ[{_URLSAFE}]{{16,4000}}\.[{_URLSAFE}]{{43}}"), 4, 3.5,
             validate=_keystead_token),
    Detector("keystead-master-key", "keystead",
             "KEYSTEAD_MASTER_KEY= (or :) + 44 base64 characters decoding to 32 bytes",
             _MASTER_KEY_LINE, 0, 4.0, validate=_master_key),
    Detector("openai-project", "OpenAI",
             "sk-proj- / sk-svcacct- / sk-admin- + 40 to 200 base64url characters",
             _rx(rf"sk-(?:proj|svcacct|admin)-[{_URLSAFE}]{{40,200}}"), 8, 4.0),
    Detector("openai-legacy", "OpenAI", "sk- + 20 base62 + T3BlbkFJ + 20 base62 (51 characters)",
             _rx(rf"sk-[{_B62}]{{20}}T3BlbkFJ[{_B62}]{{20}}"), 3, 3.5),
    Detector("anthropic", "Anthropic",
             "sk-ant-api03- or sk-ant-admin01- + 93 base64url characters + AA",
             _rx(rf"sk-ant-(?:api03|admin01)-[{_URLSAFE}]{{93}}AA"), 13, 4.0),
    Detector("openrouter", "OpenRouter", "sk-or-v1- + 64 lowercase hex",
             _rx(r"sk-or-v1-[0-9a-f]{64}"), 9, 3.0),
    Detector("google-ai", "Google AI (Gemini)", "AIza + 35 base64url characters",
             _rx(rf"AIza[{_URLSAFE}]{{35}}"), 4, 3.5),
    Detector("groq", "Groq", "gsk_ + 52 base62", _rx(rf"gsk_[{_B62}]{{52}}"), 4, 4.0),
    Detector("xai", "xAI", "xai- + 80 base62", _rx(rf"xai-[{_B62}]{{80}}"), 4, 4.0),
    Detector("perplexity", "Perplexity", "pplx- + 48 base62", _rx(rf"pplx-[{_B62}]{{48}}"),
             5, 3.5),
    Detector("huggingface", "Hugging Face", "hf_ + 34 letters", _rx(r"hf_[A-Za-z]{34}"), 3, 3.5,
             validate=_mixed_case),
    Detector("replicate", "Replicate", "r8_ + 37 base62", _rx(rf"r8_[{_B62}]{{37}}"), 3, 3.5),
    Detector("together", "Together AI", "tgp_v1_ + 43 base64url characters",
             _rx(rf"tgp_v1_[{_URLSAFE}]{{43}}"), 7, 3.5),
    Detector("fireworks", "Fireworks AI", "fw_ + 24 base62", _rx(rf"fw_[{_B62}]{{24}}"), 3, 3.3,
             validate=_random_looking),
    Detector("langsmith", "LangSmith", "lsv2_pt_ or lsv2_sk_ + 32 hex + _ + 10 hex",
             _rx(r"lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10}"), 8, 3.0),
    Detector("github", "GitHub", "ghp_ / gho_ / ghu_ / ghs_ / ghr_ + 36 base62",
             _rx(rf"gh[pousr]_[{_B62}]{{36}}"), 4, 3.5),
    Detector("github-fine-grained", "GitHub", "github_pat_ + 22 base62 + _ + 59 base62",
             _rx(rf"github_pat_[{_B62}]{{22}}_[{_B62}]{{59}}"), 11, 4.0),
    Detector("aws-access-key-id", "AWS", "AKIA or ASIA + 16 uppercase base32",
             _rx(r"(?:AKIA|ASIA)[A-Z2-7]{16}"), 4, 2.8),
    Detector("aws-secret-access-key", "AWS",
             "40 base64 characters next to an access key id or aws_secret_access_key",
             _rx(r"[A-Za-z0-9/+]{40}"), 0, 4.2,
             context=re.compile(r"(?i:aws.?secret|secret.?access.?key)|(?:AKIA|ASIA)[A-Z2-7]{16}"),
             validate=_random_looking),
    Detector("azure-openai", "Azure OpenAI", "32 hex next to the word azure",
             _rx(r"[0-9a-fA-F]{32}"), 0, 3.0, context=_ctx(r"azure"), not_after=_DIGEST_LABEL,
             validate=_hex_with_letters_and_digits),
    Detector("deepseek", "DeepSeek", "sk- + 32 lowercase hex next to the word deepseek",
             _rx(r"sk-[0-9a-f]{32}"), 3, 3.0, context=_ctx(r"deep.?seek"), not_after=_DIGEST_LABEL,
             validate=_hex_with_letters_and_digits),
    Detector("together-legacy", "Together AI", "64 hex next to the word together",
             _rx(r"[0-9a-f]{64}"), 0, 3.3, context=_ctx(r"together"), not_after=_DIGEST_LABEL,
             validate=_hex_with_letters_and_digits),
    Detector("mistral", "Mistral AI", "32 base62 next to the word mistral",
             _rx(rf"[{_B62}]{{32}}"), 0, 4.0, context=_ctx(r"mistral"),
             validate=_random_looking),
    Detector("cohere", "Cohere", "40 base62 next to the word cohere",
             _rx(rf"[{_B62}]{{40}}"), 0, 4.0, context=_ctx(r"cohere|\bco_api"),
             validate=_random_looking),
)
