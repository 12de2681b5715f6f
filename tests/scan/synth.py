"""Synthetic credentials in the real formats, from a seeded generator: format-valid, random,
never real. Tests put them into the corpus templates at run time, so the repository itself holds
no key-shaped strings (and stays clean under `keystead scan .`)."""

from __future__ import annotations

import random
import string
import zlib
from collections.abc import Callable

from keystead.keys import format as key_format

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
URLSAFE = B62 + "-_"
HEX = "0123456789abcdef"
B32 = string.ascii_uppercase + "234567"


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def keystead_key(rng: random.Random) -> str:
    body = "ksk_" + _pick(rng, "abcdefghijklmnopqrstuvwxyz234567", 8) + _pick(rng, B62, 32)
    return body + key_format._base62(zlib.crc32(body.encode()), 6)


def keystead_token(rng: random.Random) -> str:
    from keystead.keys.tokens import TokenClaims, TokenSigner

    issued = rng.randrange(1_700_000_000, 1_900_000_000)
    claims = TokenClaims(token_id=_pick(rng, HEX, 12), key_id=_pick(rng, B32.lower(), 8),
                         credential_id=_pick(rng, B32.lower(), 8), issued_at=issued,
                         expires_at=issued + rng.randrange(60, 86_400),
                         rpm=rng.choice([None, 60]), user=rng.choice([None, "user-42"]))
    return TokenSigner(rng.randbytes(32)).mint(claims)


def master_key(rng: random.Random) -> str:
    import base64

    return base64.urlsafe_b64encode(rng.randbytes(32)).decode()


def github_token(rng: random.Random, kind: str = "p") -> str:
    """A classic token with a valid CRC32 checksum over its 30 random characters."""
    body = _pick(rng, B62, 30)
    return f"gh{kind}_{body}{key_format._base62(zlib.crc32(body.encode()), 6)}"


def _uuid(rng: random.Random) -> str:
    h = _pick(rng, HEX, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def webhook(kind: str, rng: random.Random) -> str:
    if kind == "slack-webhook":
        return (f"https://hooks.slack.com/services/T{_pick(rng, B32, 8)}/B{_pick(rng, B32, 10)}/"
                f"{_pick(rng, B62, 24)}")
    if kind == "discord-webhook":
        host = rng.choice(["discord.com", "discordapp.com", "ptb.discord.com"])
        return (f"https://{host}/api/webhooks/{rng.randrange(10**17, 10**19)}/"
                f"{_pick(rng, URLSAFE, 68)}")
    if kind == "teams-webhook":
        return (f"https://contoso.webhook.office.com/webhookb2/{_uuid(rng)}@{_uuid(rng)}/"
                f"IncomingWebhook/{_pick(rng, HEX, 32)}/{_uuid(rng)}/V2{_pick(rng, URLSAFE, 44)}")
    assert kind == "azure-workflow-webhook"
    return (f"https://prod-{rng.randrange(10, 99)}.westeurope.logic.azure.com:443/workflows/"
            f"{_pick(rng, HEX, 32)}/triggers/manual/paths/invoke?api-version=2016-06-01"
            f"&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={_pick(rng, URLSAFE, 43)}")


def synth(detector: str, rng: random.Random) -> str:
    def p(alphabet: str, n: int) -> str:
        return _pick(rng, alphabet, n)

    makers: dict[str, Callable[[], str]] = {
        "keystead": lambda: keystead_key(rng),
        "keystead-admin-token": lambda: rng.choice(["ksa_", "kst_admin_"]) + p(URLSAFE, 43),
        "keystead-token": lambda: keystead_token(rng),
        "keystead-master-key": lambda: master_key(rng),
        "openai-project": lambda: (f"sk-{rng.choice(['proj', 'svcacct', 'admin'])}-"
                                   f"{p(URLSAFE, 74)}T3BlbkFJ{p(URLSAFE, 74)}"),
        "openai-legacy": lambda: f"sk-{p(B62, 20)}T3BlbkFJ{p(B62, 20)}",
        "anthropic": lambda: f"sk-ant-{rng.choice(['api03', 'admin01'])}-{p(URLSAFE, 93)}AA",
        "openrouter": lambda: f"sk-or-v1-{p(HEX, 64)}",
        "google-ai": lambda: f"AIza{p(URLSAFE, 35)}",
        "groq": lambda: f"gsk_{p(B62, 52)}",
        "xai": lambda: f"xai-{p(B62, 80)}",
        "perplexity": lambda: f"pplx-{p(B62, 48)}",
        "huggingface": lambda: f"hf_{p(string.ascii_letters, 34)}",
        "replicate": lambda: f"r8_{p(B62, 37)}",
        "together": lambda: f"tgp_v1_{p(URLSAFE, 43)}",
        "fireworks": lambda: f"fw_{p(B62, 24)}",
        "langsmith": lambda: f"lsv2_{rng.choice(['pt', 'sk'])}_{p(HEX, 32)}_{p(HEX, 10)}",
        "github": lambda: github_token(rng, rng.choice("pousr")),
        "github-fine-grained": lambda: f"github_pat_{p(B62, 22)}_{p(B62, 59)}",
        "aws-access-key-id": lambda: f"{rng.choice(['AKIA', 'ASIA'])}{p(B32, 16)}",
        "aws-secret-access-key": lambda: p(B62 + "/+", 40),
        "azure-openai": lambda: p(HEX, 32),
        "deepseek": lambda: f"sk-{p(HEX, 32)}",
        "together-legacy": lambda: p(HEX, 64),
        "mistral": lambda: p(B62, 32),
        "cohere": lambda: p(B62, 40),
        "slack-webhook": lambda: webhook("slack-webhook", rng),
        "discord-webhook": lambda: webhook("discord-webhook", rng),
        "teams-webhook": lambda: webhook("teams-webhook", rng),
        "azure-workflow-webhook": lambda: webhook("azure-workflow-webhook", rng),
    }
    return makers[detector]()


def found(text: str) -> list[tuple[int, str, str]]:
    """(line, detector, secret) of every finding in `text`: what the shape tests compare."""
    from keystead.scan.scanner import scan_text

    return [(f.line, f.detector, f.secret) for f in scan_text(text, "x")]
