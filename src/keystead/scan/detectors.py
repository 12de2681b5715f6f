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
  legacy keys, AWS secret keys) the name the value is given ties it to the provider (see
  `keystead.scan.context`).

Each detector also lists `anchors`: lowercase literals one of which any text holding such a
credential contains (its prefix, or the provider's name or host). A text holding none of any
detector's anchors is passed over without running a single pattern: most files of a repository.
"""

from __future__ import annotations

import base64
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from keystead.keys.format import parse_key

__all__ = ["ANCHORS", "DETECTORS", "KEY_WORD", "Detector", "entropy", "github_checksum_ok",
           "is_placeholder", "mask"]

# Characters that continue a token: a match touching one of them is part of something longer
# (but a URL's user-info starts right after `://`: `https://ghp_...@github.com`).
_LEFT = r"(?:(?<![A-Za-z0-9_+/-])|(?<=://))"
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
    # Lowercase literals: a text without any of them cannot hold this credential (prefilter).
    anchors: tuple[str, ...] = ()
    # The provider's API hosts: a generic name (`api_key`, `Authorization: Bearer`) a few lines
    # from a request to one of them is tied to the provider.
    host: re.Pattern[str] | None = None
    # `validate` checks a checksum the issuer embeds: findings say "verified": "checksum".
    checksum: bool = False
    kind: str = "key"  # "key", "token" or "webhook" (a URL that is itself the credential)
    # The value's own prefix says it is a secret (DeepSeek's `sk-`): naming the provider is
    # tie enough, no credential word needed next to it.
    says_secret: bool = False

    def accepts(self, secret: str, body: str | None = None) -> bool:
        """`body` is the random part when the pattern has a `body` group (a webhook URL)."""
        if body is None:
            body = secret[self.prefix_len:]
        if is_placeholder(secret) or entropy(body) < self.min_entropy:
            return False
        return self.validate is None or self.validate(secret)


_DIGEST_LABEL = re.compile(
    r"(?i)(?:sha\w*|md5|hash|digest|checksum|integrity|etag|commit|revision|rev)\W{0,4}$")


# With a context word, the line of the match must also say it holds a credential.
KEY_WORD = re.compile(r"(?i)key|secret|token|passw|credential|auth|bearer")


_LEAD = re.compile(r"^[A-Za-z0-9_-]+(?![{*+?])")


def _rx(body: str) -> re.Pattern[str]:
    # A fixed prefix (`sk-`, `gsk_`, `AIza`) goes first and the left boundary is checked right
    # after it, looking back past it: the same matches, but `re` then finds candidates by
    # scanning for the prefix instead of trying a look-behind at every character (ten times
    # faster on a text with no key).
    lead = _LEAD.match(body)
    if lead is None:
        return re.compile(f"{_LEFT}(?P<secret>{body}){_RIGHT}")
    prefix, rest = lead.group(), body[lead.end():]
    boundary = f"(?:(?<![A-Za-z0-9_+/-]{prefix})|(?<=://{prefix}))"
    return re.compile(f"(?P<secret>{prefix}{boundary}{rest}){_RIGHT}")


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


def _random_looking(secret: str) -> bool:
    """Mixed case, and a digit or the entropy of random letters (4.0 bits: camelCase words
    stay under it)."""
    return _mixed_case(secret) and (any(c.isdigit() for c in secret) or entropy(secret) >= 4.0)


def _hex_with_letters_and_digits(secret: str) -> bool:
    body = secret.split("-")[-1]
    return any(c.isdigit() for c in body) and any(c.isalpha() for c in body)


def _keystead(secret: str) -> bool:
    return parse_key(secret) is not None


_B62_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def github_checksum_ok(token: str) -> bool:
    """GitHub's classic tokens (ghp_, gho_, ghu_, ghs_, ghr_ + 36) end with the CRC32 of their
    30 random characters in 6 base62 digits (0-9A-Za-z), left-padded with 0: a typo or a
    made-up look-alike fails it (1 in 2^32 passes by chance)."""
    body, check = token[4:34], token[34:]
    number = zlib.crc32(body.encode())
    digits = []
    for _ in range(6):
        number, digit = divmod(number, 62)
        digits.append(_B62_DIGITS[digit])
    return "".join(reversed(digits)) == check


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
    r"(?:KEYSTEAD_MASTER_KEY|(?<![\w-])master_key|(?i:keystead[\w.-]{0,40}?master[_.-]?key)"
    r"|--master-key)[\"']?(?:\s*[:=]\s*|\s+)[\"']?"
    r"(?P<secret>[A-Za-z0-9_+/-]{43}=?)(?![A-Za-z0-9_+/=-])")

# The provider words of the context formats, spelled as names spell them. Together's is an
# English word too: only its product spellings (`together_api_key`, `TOGETHER`, `Together(`,
# a `together:` section) count. "coherent" and "coherence" are not Cohere.
_AZURE = r"(?i:azure)"
_DEEPSEEK = r"(?i:deep.?seek)"
_TOGETHER = (r"(?i:together[_.-]?(?:ai|api|xyz|key|token|secret|client))|TOGETHER|Together\(|"
             r"(?i:\btogether\b(?=[\"']?\s*[:=\]]))")
_MISTRAL = r"(?i:mistral|codestral)"
_COHERE = r"(?i:cohere(?!n)|\bco_api)"
_AWS = r"(?i:aws.?secret|secret.?access.?key)|(?:AKIA|ASIA)[A-Z2-7]{16}"


def _host(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_WEBHOOK_TAIL = r"(?![A-Za-z0-9_%/-])"

DETECTORS: tuple[Detector, ...] = (
    Detector("keystead", "keystead", "ksk_ + 8 base32 id + 32 base62 + 6-char CRC32 checksum",
             _rx(r"ksk_[a-z2-7]{8}[A-Za-z0-9]{38}"), 4, 3.5, validate=_keystead,
             anchors=("ksk_",), checksum=True),
    Detector("keystead-admin-token", "keystead",
             "ksa_ (or, written by older versions, kst_admin_) + 43 base64url characters",
             _rx(rf"(?:ksa_|kst_admin_)[{_URLSAFE}]{{43}}"), 4, 4.0, validate=_mixed_case,
             anchors=("ksa_", "kst_"), kind="token"),
    Detector("keystead-token", "keystead",
             "kst_ + base64url JSON claims (t, k, e) + . + 43 base64url HMAC-SHA256 signature",
             _rx(rf"kst_eyJ[{_URLSAFE}]{{16,4000}}\.[{_URLSAFE}]{{43}}"), 4, 3.5,
             validate=_keystead_token, anchors=("kst_",), kind="token"),
    Detector("keystead-master-key", "keystead",
             "KEYSTEAD_MASTER_KEY= (or :) + 44 base64 characters decoding to 32 bytes",
             _MASTER_KEY_LINE, 0, 4.0, validate=_master_key,
             anchors=("master_key", "masterkey", "master-key", "master.key")),
    Detector("openai-project", "OpenAI",
             "sk-proj- / sk-svcacct- / sk-admin- + 40 to 200 base64url characters",
             _rx(rf"sk-(?:proj|svcacct|admin)-[{_URLSAFE}]{{40,200}}"), 8, 4.0, anchors=("sk-",)),
    Detector("openai-legacy", "OpenAI", "sk- + 20 base62 + T3BlbkFJ + 20 base62 (51 characters)",
             _rx(rf"sk-[{_B62}]{{20}}T3BlbkFJ[{_B62}]{{20}}"), 3, 3.5, anchors=("sk-",)),
    Detector("anthropic", "Anthropic",
             "sk-ant-api03- or sk-ant-admin01- + 93 base64url characters + AA",
             _rx(rf"sk-ant-(?:api03|admin01)-[{_URLSAFE}]{{93}}AA"), 13, 4.0, anchors=("sk-",)),
    Detector("openrouter", "OpenRouter", "sk-or-v1- + 64 lowercase hex",
             _rx(r"sk-or-v1-[0-9a-f]{64}"), 9, 3.0, anchors=("sk-",)),
    Detector("google-ai", "Google AI (Gemini)", "AIza + 35 base64url characters",
             _rx(rf"AIza[{_URLSAFE}]{{35}}"), 4, 3.5, anchors=("aiza",)),
    Detector("groq", "Groq", "gsk_ + 52 base62", _rx(rf"gsk_[{_B62}]{{52}}"), 4, 4.0,
             anchors=("gsk_",)),
    Detector("xai", "xAI", "xai- + 80 base62", _rx(rf"xai-[{_B62}]{{80}}"), 4, 4.0,
             anchors=("xai-",)),
    Detector("perplexity", "Perplexity", "pplx- + 48 base62", _rx(rf"pplx-[{_B62}]{{48}}"),
             5, 3.5, anchors=("pplx-",)),
    Detector("huggingface", "Hugging Face", "hf_ + 34 letters", _rx(r"hf_[A-Za-z]{34}"), 3, 3.5,
             validate=_mixed_case, anchors=("hf_",)),
    Detector("replicate", "Replicate", "r8_ + 37 base62", _rx(rf"r8_[{_B62}]{{37}}"), 3, 3.5,
             anchors=("r8_",)),
    Detector("together", "Together AI", "tgp_v1_ + 43 base64url characters",
             _rx(rf"tgp_v1_[{_URLSAFE}]{{43}}"), 7, 3.5, anchors=("tgp_",)),
    Detector("fireworks", "Fireworks AI", "fw_ + 24 base62", _rx(rf"fw_[{_B62}]{{24}}"), 3, 3.3,
             validate=_random_looking, anchors=("fw_",)),
    Detector("langsmith", "LangSmith", "lsv2_pt_ or lsv2_sk_ + 32 hex + _ + 10 hex",
             _rx(r"lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10}"), 8, 3.0, anchors=("lsv2_",)),
    Detector("github", "GitHub",
             "ghp_ / gho_ / ghu_ / ghs_ / ghr_ + 30 base62 + 6-char CRC32 checksum",
             _rx(rf"gh[pousr]_[{_B62}]{{36}}"), 4, 3.5, validate=github_checksum_ok,
             anchors=("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), checksum=True),
    Detector("github-fine-grained", "GitHub", "github_pat_ + 22 base62 + _ + 59 base62",
             _rx(rf"github_pat_[{_B62}]{{22}}_[{_B62}]{{59}}"), 11, 4.0, anchors=("github_pat_",)),
    Detector("aws-access-key-id", "AWS", "AKIA or ASIA + 16 uppercase base32",
             _rx(r"(?:AKIA|ASIA)[A-Z2-7]{16}"), 4, 2.8, anchors=("akia", "asia")),
    Detector("aws-secret-access-key", "AWS",
             "40 base64 characters named as an AWS secret, or next to an access key id",
             _rx(r"[A-Za-z0-9/+]{40}"), 0, 4.2, context=re.compile(_AWS),
             validate=_random_looking,
             anchors=("aws", "secret_access", "secretaccess", "secret-access", "secret access",
                      "akia", "asia")),
    Detector("azure-openai", "Azure OpenAI", "32 hex named as an Azure key",
             _rx(r"[0-9a-fA-F]{32}"), 0, 3.0, context=re.compile(_AZURE),
             not_after=_DIGEST_LABEL, validate=_hex_with_letters_and_digits, anchors=("azure",),
             host=_host(r"[\w-]+\.(?:openai\.azure\.com|cognitiveservices\.azure\.com|"
                        r"services\.ai\.azure\.com)|azure-api\.net")),
    Detector("deepseek", "DeepSeek", "sk- + 32 lowercase hex named as a DeepSeek key",
             _rx(r"sk-[0-9a-f]{32}"), 3, 3.0, context=re.compile(_DEEPSEEK),
             not_after=_DIGEST_LABEL, validate=_hex_with_letters_and_digits,
             anchors=("deepseek", "deep_seek", "deep-seek"),
             host=_host(r"api\.deepseek\.com"), says_secret=True),
    Detector("together-legacy", "Together AI", "64 hex named as a Together key",
             _rx(r"[0-9a-f]{64}"), 0, 3.3, context=re.compile(_TOGETHER),
             not_after=_DIGEST_LABEL, validate=_hex_with_letters_and_digits,
             anchors=("together",), host=_host(r"api\.together\.(?:xyz|ai)")),
    Detector("mistral", "Mistral AI", "32 base62 named as a Mistral key",
             _rx(rf"[{_B62}]{{32}}"), 0, 4.0, context=re.compile(_MISTRAL),
             validate=_random_looking, anchors=("mistral", "codestral"),
             host=_host(r"(?:api|codestral)\.mistral\.ai")),
    Detector("cohere", "Cohere", "40 base62 named as a Cohere key",
             _rx(rf"[{_B62}]{{40}}"), 0, 4.0, context=re.compile(_COHERE),
             validate=_random_looking, anchors=("cohere", "co_api"),
             host=_host(r"api\.cohere\.(?:com|ai)")),
    # Incoming webhooks: whoever holds the URL can post to the channel, so the URL is the
    # secret. The random part (`body`) carries the entropy check; `xxxx` placeholders fail it.
    Detector("slack-webhook", "Slack",
             "https://hooks.slack.com/services/T…/B…/ + 24 base62 (or /workflows/, /triggers/)",
             re.compile(r"(?P<secret>https?://hooks\.slack\.com/(?:services|workflows|triggers)/"
                        r"T[A-Z0-9]{6,12}/[AB][A-Z0-9]{6,14}/(?:\d{6,24}/)?"
                        rf"(?P<body>[A-Za-z0-9]{{20,40}})){_WEBHOOK_TAIL}"),
             0, 3.5, anchors=("hooks.slack.com",), kind="webhook"),
    Detector("discord-webhook", "Discord",
             "https://discord.com/api/webhooks/ + numeric id + / + 68 base64url token "
             "(also discordapp.com, ptb. and canary.)",
             re.compile(r"(?P<secret>https?://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/"
                        r"(?:v\d{1,2}/)?webhooks/\d{16,21}/"
                        rf"(?P<body>[{_URLSAFE}]{{60,80}})){_WEBHOOK_TAIL}"),
             0, 4.0, anchors=("discord",), kind="webhook"),
    Detector("teams-webhook", "Microsoft Teams",
             "https://<tenant>.webhook.office.com/webhookb2/<uuid>@<uuid>/IncomingWebhook/"
             "<32 hex>/<uuid> (and outlook.office.com/webhook/)",
             re.compile(r"(?P<secret>https://(?:[\w-]+\.webhook\.office\.com/webhookb2|"
                        r"outlook\.office(?:365)?\.com/webhook)/[0-9a-f-]{36}@[0-9a-f-]{36}/"
                        r"IncomingWebhook/(?P<body>[0-9a-f]{32})/[0-9a-f-]{36}"
                        rf"(?:/[{_URLSAFE}]{{20,80}})?){_WEBHOOK_TAIL}"),
             0, 3.0, anchors=("webhook.office", "outlook.office"), kind="webhook"),
    Detector("azure-workflow-webhook", "Microsoft Power Automate / Logic Apps",
             "https://…logic.azure.com…/workflows/<32 hex>/triggers/…?…sig=<43 base64url> "
             "(or …environment.api.powerplatform.com…)",
             re.compile(r"(?P<secret>https://[\w.-]+\.(?:logic\.azure\.com|"
                        r"api\.powerplatform\.com)(?::\d+)?/[\w/.-]*workflows/[0-9a-f]{32}/"
                        r"triggers/[^\s\"'<>]*?[?&]sig=(?P<body>[A-Za-z0-9_%-]{30,100}))"
                        r"(?![A-Za-z0-9_%-])"),
             0, 4.0, anchors=("logic.azure.com", "powerplatform.com"), kind="webhook"),
)

# Every anchor of every detector: a text holding none of them has nothing to find.
ANCHORS: tuple[str, ...] = tuple(sorted({a for d in DETECTORS for a in d.anchors}))
