"""Shapes of hard negatives shared by several repositories of the blind corpus."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib

from corpus_core import B62, B64URL, Corpus, github_checksum, ksk_checksum


def bad_github(c: Corpus, prefix: str = "ghp") -> str:
    """A classic GitHub token shape whose last six characters are not its CRC32."""
    rnd = c.s(B62, 30)
    good = github_checksum(rnd)
    bad = good
    while bad == good:
        bad = c.s(B62, 6)
    return f"{prefix}_{rnd}{bad}"


def bad_ksk(c: Corpus) -> str:
    body = "ksk_" + c.s("abcdefghijklmnopqrstuvwxyz234567", 8) + c.s(B62, 32)
    good = ksk_checksum(body)
    bad = good
    while bad == good:
        bad = c.s(B62, 6)
    return body + bad


def jwt(c: Corpus, sub: str, iss: str = "https://auth.staging.example.test/") -> str:
    def enc(obj: object) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    iat = 1_714_000_000 + c.rng.randint(0, 4_000_000)
    head = enc({"alg": "RS256", "typ": "JWT", "kid": c.hex(8)})
    body = enc({"iss": iss, "sub": sub, "aud": "support-console", "iat": iat, "exp": iat + 3600})
    return f"{head}.{body}.{c.b64url(86)}"


def png_b64(c: Corpus, width: int = 16, height: int = 12) -> str:
    """A real (tiny, noisy) PNG, base64: what a notebook output or a data URI holds."""
    rows = b"".join(b"\x00" + bytes(c.rng.randrange(256) for _ in range(width * 3))
                    for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def sha256(c: Corpus) -> str:
    return hashlib.sha256(c.rng.randbytes(32)).hexdigest()


def sha1(c: Corpus) -> str:
    return hashlib.sha1(c.rng.randbytes(32)).hexdigest()


def md5(c: Corpus) -> str:
    return hashlib.md5(c.rng.randbytes(32)).hexdigest()


def sri512(c: Corpus) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(c.rng.randbytes(32)).digest()).decode()


def b64url_id(c: Corpus, n: int) -> str:
    return c.s(B64URL, n)
