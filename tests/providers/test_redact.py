"""Provider keys out of upstream error bodies: the pool's own keys by exact match (and their JSON
spelling), any other credential by the scanner's detectors; the bytes otherwise untouched."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

from keystead.providers.base import Capabilities, Endpoint
from keystead.providers.key_pool import KeyPool
from keystead.providers.openai_compatible import OpenAICompatibleProvider
from keystead.providers.redact import MAX_ERROR_BODY, OWN_KEY, ErrorResponse, redact
from keystead.providers.transport import UpstreamResponse

OWN = "pk-custom-" + secrets.token_hex(16)  # no detector knows this format: exact match only
OPENAI = "sk-proj-" + secrets.token_urlsafe(60)  # a detector knows this one
GOOGLE = "AIza" + secrets.token_urlsafe(26)[:35]


def test_the_pools_own_keys_are_masked_exactly() -> None:
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {OWN}.",
                                 "code": "invalid_api_key"}}).encode()
    out = redact(body, [OWN, "pk-other-" + secrets.token_hex(16)])
    assert OWN.encode() not in out
    assert json.loads(out)["error"]["message"] == f"Incorrect API key provided: {OWN_KEY}."


def test_a_key_in_its_json_spelling_is_masked_too() -> None:
    slashed = "key/with+slash/" + secrets.token_hex(12)
    body = b'{"error": {"message": "bad key ' + slashed.replace("/", "\\/").encode() + b'"}}'
    assert b"with+slash" not in redact(body, [slashed])


def test_other_credentials_are_masked_by_the_detectors() -> None:
    body = (f'{{"error": {{"message": "Permission denied: Consumer \'api_key:{GOOGLE}\' has '
            f'been suspended. Also: {OPENAI}"}}}}').encode()
    out = redact(body, [])
    assert GOOGLE.encode() not in out and OPENAI.encode() not in out
    assert b"[REDACTED:google-ai]" in out and b"[REDACTED:openai-project]" in out
    json.loads(out)  # still JSON


def test_a_long_body_is_read_around_its_key_like_runs() -> None:
    """Past 4 KiB the detectors read only the runs of key characters and their surroundings,
    so a key deep in a long body is still found, and prose around it is kept."""
    body = json.dumps({"error": {"message": "word " * 2000 + f"leaked {OPENAI} here"}}).encode()
    out = redact(body, [])
    assert OPENAI.encode() not in out and b"[REDACTED:openai-project]" in out
    assert out.count(b"word ") == 2000


def test_a_body_with_too_much_to_read_has_every_run_masked() -> None:
    runs = [secrets.token_hex(12) for _ in range(400)]  # 400 ids: more than 4 KiB to read
    body = json.dumps({"error": {"message": " ".join([*runs, OPENAI]), "code": "x"}}).encode()
    out = redact(body, [])
    assert OPENAI.encode() not in out and not any(run.encode() in out for run in runs)
    assert out.count(b"[REDACTED:unscanned]") == 401 and b'"code": "x"' in out


def test_an_error_body_too_large_to_relay_is_dropped() -> None:
    body = b'{"error": {"message": "' + b"x" * MAX_ERROR_BODY + b'"}}'
    assert redact(body, [OWN]) == b""


def test_nothing_to_mask_returns_the_same_bytes() -> None:
    body = b'{"error": {"message": "max_tokens is too large", "code": null}}'
    assert redact(body, [OWN]) is body
    assert redact(b"", [OWN]) == b""
    # OpenAI's own masking leaves too little to match: nothing changes.
    masked = b'{"error": {"message": "Incorrect API key provided: sk-proj-****abcd."}}'
    assert redact(masked, [OWN]) is masked


def test_bytes_that_are_not_utf8_survive() -> None:
    body = b"\xff\xfe upstream said no to " + OWN.encode() + b" \x80"
    assert redact(body, [OWN]) == b"\xff\xfe upstream said no to " + OWN_KEY.encode() + b" \x80"


def test_short_keys_are_not_matched_as_words() -> None:
    body = b'{"error": {"message": "a test of the key"}}'
    assert redact(body, ["test", "key"]) is body


class _Echo:
    """An upstream answer of `status` that echoes `text`."""

    def __init__(self, status: int, text: bytes):
        self.status = status
        self.headers = {"content-type": "application/json"}
        self.text = text

    async def read(self) -> bytes:
        return self.text

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        yield self.text

    def abort(self) -> None:
        pass

    def release(self) -> None:
        pass


class EchoTransport:
    def __init__(self, status: int):
        self.status = status

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                   *, read_timeout: float, what: str) -> UpstreamResponse:
        key = headers.get("authorization", "").removeprefix("Bearer ")
        return _Echo(self.status, b'{"error": {"message": "bad key ' + key.encode() + b'"}}')

    async def close(self) -> None:
        pass


def test_send_masks_error_answers_and_leaves_successes_alone() -> None:
    async def answer(status: int, *, pinned: bool = False) -> UpstreamResponse:
        pool = KeyPool.of("up", [OWN])
        provider = OpenAICompatibleProvider("up", base_url="http://up/v1", api_key=pool,
                                            models=("m",), transport=EchoTransport(status),
                                            read_timeout=5, capabilities=Capabilities())
        return await provider.send(Endpoint.CHAT, "m", b'{"model":"m"}', stream=True,
                                   key=pool.keys[0] if pinned else None)

    for status in (400, 401, 403, 404, 429, 500, 503):
        for pinned in (False, True):
            reply = asyncio.run(answer(status, pinned=pinned))
            assert isinstance(reply, ErrorResponse) and reply.status == status
            body = asyncio.run(reply.read())
            assert OWN.encode() not in body and OWN_KEY.encode() in body

            async def chunks(response: UpstreamResponse) -> bytes:
                return b"".join([c async for c in response.iter_chunks()])

            assert asyncio.run(chunks(reply)) == body
    ok = asyncio.run(answer(200))
    assert not isinstance(ok, ErrorResponse)  # a success is never read or rewritten here
