"""The machinery of the blind corpus generator: key makers, markers, labels.

Templates hold markers (`@@K12@@` for a whole key, `@@K12.1@@` for its second piece, `@@N7@@`
for a negative) instead of the text, so a file can be built any way (f-strings, json.dumps of a
notebook, a JSON string inside a JSON string) and the lines of every label are found afterwards
in the finished text. Nothing here knows how any scanner works.
"""

from __future__ import annotations

import base64
import random
import re
import string
import sys
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from keystead.keys.tokens import TokenClaims, TokenSigner  # noqa: E402

PROVIDERS = (
    "openai", "anthropic", "google-ai", "azure-openai", "mistral", "cohere", "deepseek",
    "together", "groq", "xai", "perplexity", "huggingface", "replicate", "fireworks",
    "openrouter", "langsmith", "github", "aws", "keystead", "slack-webhook", "discord-webhook",
    "teams-webhook",
)
PLACES = (
    "code-assignment", "env-file", "json-key", "toml-key", "yaml-key", "yaml-nested",
    "properties-file", "cli-flag", "http-header", "notebook", "terraform", "ci-file",
    "helm-values", "docker-compose", "concatenated", "line-continuation", "csv-cell", "tsv-cell",
    "json-escaped", "url-query", "url-userinfo", "log-line", "markdown", "comment", "other",
)
NEG_KINDS = (
    "placeholder", "redacted", "hash", "uuid", "base64-blob", "jwt", "look-alike", "bad-checksum",
    "doc-example", "test-fixture-marked-fake", "random-id", "high-entropy-non-secret", "other",
)
# Providers whose keys carry no prefix: found only by their context, so the corpus holds more.
NO_PREFIX = ("azure-openai", "mistral", "cohere", "together")

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
B64URL = string.ascii_letters + string.digits + "-_"
B64 = string.ascii_letters + string.digits + "+/"
HEX = "0123456789abcdef"
UPPER_DIGITS = string.ascii_uppercase + string.digits
B32_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
KSK_ID = "abcdefghijklmnopqrstuvwxyz234567"

MARKER = re.compile(r"@@([KN])(\d+)(?:\.(\d+))?@@")
FILL = re.compile(r"<<(\w+)>>")

VARIANTS: dict[str, tuple[str, ...]] = {
    "openai": ("proj", "proj", "svcacct", "proj58", "legacy", "admin"),
    "anthropic": ("api03", "api03", "api03", "admin01"),
    "together": ("hex64", "tgp", "hex64"),
    "langsmith": ("pt", "sk"),
    "github": ("ghp", "github_pat", "gho", "ghs", "ghu", "ghp", "ghr"),
    "aws": ("id", "secret"),
    "keystead": ("ksk", "ksa", "kst", "master"),
}


def base62(number: int, width: int) -> str:
    chars = []
    while number:
        number, digit = divmod(number, 62)
        chars.append(B62[digit])
    return "".join(reversed(chars)).rjust(width, "0")


def github_checksum(random_part: str) -> str:
    """GitHub's classic token checksum: CRC32 of the 30 random characters, base62, 6 wide."""
    return base62(zlib.crc32(random_part.encode("ascii")), 6)


def ksk_checksum(body: str) -> str:
    """keystead's key checksum, written from its documented format (CRC32 of all before it)."""
    return base62(zlib.crc32(body.encode("ascii")), 6)


def fill(text: str, **values: str) -> str:
    def sub(match: re.Match[str]) -> str:
        return values[match.group(1)]

    out = FILL.sub(sub, text)
    return out


@dataclass
class Key:
    idx: int
    provider: str
    place: str
    secret: str
    variant: str
    cuts: list[int] = field(default_factory=list)

    @property
    def m(self) -> str:
        """The marker of the whole key."""
        assert not self.cuts, "a split key is written by its pieces"
        return f"@@K{self.idx}@@"

    def split(self, *cuts: int) -> list[str]:
        """Markers of the key's pieces, cut at these offsets (negative: from the end)."""
        n = len(self.secret)
        self.cuts = sorted(c % n for c in cuts)
        return [f"@@K{self.idx}.{i}@@" for i in range(len(self.cuts) + 1)]

    def piece(self, i: int) -> str:
        bounds = [0, *self.cuts, len(self.secret)]
        return self.secret[bounds[i]:bounds[i + 1]]


@dataclass
class Neg:
    idx: int
    text: str
    kind: str
    note: str


@dataclass
class NegSlot:
    m: str


class Corpus:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.keys: list[Key] = []
        self.negs: list[Neg] = []
        self.files: dict[str, str] = {}
        self.key_labels: list[dict[str, object]] = []
        self.neg_labels: list[dict[str, object]] = []
        self._variant_turn: dict[str, int] = {}
        self._used: set[str] = set()
        self.signer = TokenSigner(self.rng.randbytes(32))

    # -- random text -------------------------------------------------------------------------
    def s(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def hex(self, n: int) -> str:
        return self.s(HEX, n)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def b64url(self, n: int) -> str:
        return self.s(B64URL, n)

    # -- keys --------------------------------------------------------------------------------
    def key(self, provider: str, place: str, variant: str | None = None) -> Key:
        assert provider in PROVIDERS, provider
        assert place in PLACES, place
        if variant is None:
            options = VARIANTS.get(provider, ("",))
            turn = self._variant_turn.get(provider, 0)
            self._variant_turn[provider] = turn + 1
            variant = options[turn % len(options)]
        secret = self._make(provider, variant)
        key = Key(len(self.keys) + 1, provider, place, secret, variant)
        self.keys.append(key)
        return key

    def copy(self, key: Key, place: str) -> Key:
        """The same secret written a second time elsewhere: a label of its own."""
        again = Key(len(self.keys) + 1, key.provider, place, key.secret, key.variant)
        self.keys.append(again)
        return again

    def _make(self, provider: str, variant: str) -> str:
        s = self.s
        if provider == "openai":
            if variant == "legacy":
                return "sk-" + s(B62, 20) + "T3BlbkFJ" + s(B62, 20)
            prefix = {"proj": "sk-proj-", "proj58": "sk-proj-", "svcacct": "sk-svcacct-",
                      "admin": "sk-admin-"}[variant]
            n = 58 if variant in ("proj58", "admin") else 74
            return prefix + s(B64URL, n) + "T3BlbkFJ" + s(B64URL, n)
        if provider == "anthropic":
            prefix = "sk-ant-admin01-" if variant == "admin01" else "sk-ant-api03-"
            return prefix + s(B64URL, 93) + "AA"
        if provider == "google-ai":
            return "AIza" + s(B64URL, 35)
        if provider == "azure-openai":
            return self.hex(32)
        if provider == "mistral":
            return s(B62, 32)
        if provider == "cohere":
            return s(B62, 40)
        if provider == "deepseek":
            return "sk-" + self.hex(32)
        if provider == "together":
            return "tgp_v1_" + s(B64URL, 43) if variant == "tgp" else self.hex(64)
        if provider == "groq":
            return "gsk_" + s(B62, 52)
        if provider == "xai":
            return "xai-" + s(B62, 80)
        if provider == "perplexity":
            return "pplx-" + s(B62, 48)
        if provider == "huggingface":
            return "hf_" + s(string.ascii_letters, 34)
        if provider == "replicate":
            return "r8_" + s(B62, 37)
        if provider == "fireworks":
            return "fw_" + s(B62, 24)
        if provider == "openrouter":
            return "sk-or-v1-" + self.hex(64)
        if provider == "langsmith":
            return f"lsv2_{variant}_" + self.hex(32) + "_" + self.hex(10)
        if provider == "github":
            if variant == "github_pat":
                return "github_pat_" + s(B62, 22) + "_" + s(B62, 59)
            rnd = s(B62, 30)
            return f"{variant}_" + rnd + github_checksum(rnd)
        if provider == "aws":
            if variant == "secret":
                return s(B64, 40)
            return self.rng.choice(("AKIA", "AKIA", "ASIA")) + s(B32_UPPER, 16)
        if provider == "keystead":
            return self.keystead(variant)
        if provider == "slack-webhook":
            return (f"https://hooks.slack.com/services/T{s(UPPER_DIGITS, self.rng.choice((8, 10)))}"
                    f"/B{s(UPPER_DIGITS, self.rng.choice((8, 10)))}/{s(B62, 24)}")
        if provider == "discord-webhook":
            return (f"https://discord.com/api/webhooks/{self.rng.randint(10**17, 10**19 - 1)}/"
                    f"{s(B64URL, 68)}")
        if provider == "teams-webhook":
            tenant = self.rng.choice(("contoso", "acmecorp", "northwindtraders", "fabrikam"))
            url = (f"https://{tenant}.webhook.office.com/webhookb2/{self.uuid()}@{self.uuid()}"
                   f"/IncomingWebhook/{self.hex(32)}/{self.uuid()}")
            if self.rng.random() < 0.5:
                url += "/V2" + s(B64URL, 47)
            return url
        raise AssertionError(provider)

    def keystead(self, variant: str) -> str:
        if variant == "ksk":
            body = "ksk_" + self.s(KSK_ID, 8) + self.s(B62, 32)
            return body + ksk_checksum(body)
        if variant == "ksa":
            return "ksa_" + self.s(B64URL, 43)
        if variant == "master":
            return base64.urlsafe_b64encode(self.rng.randbytes(32)).decode()
        if variant == "kst":
            issued = 1_714_000_000 + self.rng.randint(0, 5_000_000)
            claims = TokenClaims(
                token_id=self.hex(12), key_id=self.s(KSK_ID, 8), credential_id=self.hex(16),
                issued_at=issued, expires_at=issued + self.rng.choice((300, 900, 3600)),
                models=self.rng.choice((None, ("gpt-4o-mini",), ("claude-3-5-haiku",))),
                user=self.rng.choice((None, "u_" + self.hex(8))))
            return self.signer.mint(claims)
        raise AssertionError(variant)

    # -- negatives ---------------------------------------------------------------------------
    def neg(self, text: str, kind: str, note: str) -> str:
        assert kind in NEG_KINDS, kind
        n = Neg(len(self.negs) + 1, text, kind, note)
        self.negs.append(n)
        return f"@@N{n.idx}@@"

    def negkey(self, text: str, kind: str, note: str) -> NegSlot:
        """A negative standing where a template expects a key (`.m`)."""
        return NegSlot(self.neg(text, kind, note))

    # -- files -------------------------------------------------------------------------------
    def file(self, path: str, text: str) -> None:
        assert path not in self.files, path
        out, _ = self.resolve(text, "files", path, first_only=False)
        self.files[path] = out

    def resolve(self, text: str, where: str, path: str, first_only: bool) -> tuple[str, int]:
        """Replace the markers, labelling each key or negative met for the first time."""
        out: list[str] = []
        line = 1
        last = 0
        spans: dict[tuple[str, int], list[int]] = {}
        for match in MARKER.finditer(text):
            chunk = text[last:match.start()]
            out.append(chunk)
            line += chunk.count("\n")
            kind, idx, piece = match.group(1), int(match.group(2)), match.group(3)
            if kind == "K":
                key = self.keys[idx - 1]
                value = key.secret if piece is None else key.piece(int(piece))
            else:
                value = self.negs[idx - 1].text
            first = line
            line += value.count("\n")
            out.append(value)
            last = match.end()
            span = spans.setdefault((kind, idx), [first, line])
            span[0], span[1] = min(span[0], first), max(span[1], line)
        out.append(text[last:])
        new = 0
        for (kind, idx), (first, end) in sorted(spans.items(), key=lambda i: (i[1][0], i[0])):
            token = f"{kind}{idx}"
            if token in self._used:
                assert first_only, f"{token} used twice ({path})"
                continue
            self._used.add(token)
            new += 1
            if kind == "K":
                key = self.keys[idx - 1]
                self.key_labels.append({
                    "id": f"k{idx:03d}", "where": where, "path": path, "lines": [first, end],
                    "provider": key.provider, "place": key.place, "secret": key.secret})
            else:
                neg = self.negs[idx - 1]
                self.neg_labels.append({
                    "id": f"n{idx:03d}", "where": where, "path": path, "lines": [first, end],
                    "kind": neg.kind, "note": neg.note})
        return "".join(out), new

    def check_all_used(self) -> None:
        unused = [f"K{k.idx}" for k in self.keys if f"K{k.idx}" not in self._used]
        unused += [f"N{n.idx}" for n in self.negs if f"N{n.idx}" not in self._used]
        assert not unused, f"made but never written: {unused}"
