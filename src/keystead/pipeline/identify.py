"""Identify: bearer key -> KeyRecord, from an in-memory table (no database on the request path).

The table is swapped whole when keys change (admin API, CLI, or another process bumping the
store's `keys` version), so a revocation takes effect on the next request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from keystead.errors import (
    AuthError,
    DisabledKey,
    ExpiredKey,
    MalformedKey,
    MissingKey,
    RevokedKey,
    RotatedKey,
    UnknownKey,
)
from keystead.keys.format import PREFIX, parse_key
from keystead.keys.hashing import KeyHasher
from keystead.keys.tokens import TOKEN_PREFIX, TokenClaims, TokenError, TokenSigner
from keystead.state.records import KeyRecord

__all__ = ["KeyTable", "bearer_token"]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


class KeyTable:
    def __init__(self, hasher: KeyHasher, clock: Callable[[], float] = time.time,
                 signer: TokenSigner | None = None):
        self._hasher = hasher
        self._signer = signer
        self._clock = clock
        self._by_id: dict[str, KeyRecord] = {}
        # credential id (the id inside a key's text) -> the key, and whether it is the
        # credential a rotation replaced (still valid until the key's previous_expires_at)
        self._credentials: dict[str, tuple[KeyRecord, bool]] = {}

    def replace(self, records: Iterable[KeyRecord]) -> None:
        by_id = {record.id: record for record in records}
        self._credentials = _credentials(by_id.values())
        self._by_id = by_id

    def put(self, record: KeyRecord) -> None:
        table = dict(self._by_id)
        table[record.id] = record
        self.replace(table.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def records(self) -> Iterable[KeyRecord]:
        """Every key (a view of the table as it is now; /metrics reads the budgets)."""
        return self._by_id.values()

    def identify(self, authorization: bytes | None, api_key: bytes | None = None) -> KeyRecord:
        return self.identify_any(authorization, api_key)[0]

    def identify_any(self, authorization: bytes | None, api_key: bytes | None = None
                     ) -> tuple[KeyRecord, TokenClaims | None]:
        """The key a request speaks for, and the token's claims when it came with a token."""
        text = bearer_token(authorization) if authorization else None
        if text is None and api_key:
            text = api_key.decode("latin-1").strip()
        if not text:
            raise MissingKey(
                "You didn't provide an API key.",
                hint="Send your keystead key as `Authorization: Bearer ksk_...` "
                     "(the OpenAI SDKs do this with api_key=...).",
            )
        if not text.isascii() or not text.isprintable():
            raise MalformedKey(
                "The API key contains characters no keystead key has.",
                hint=f"keystead keys start with {PREFIX} and are ASCII letters and digits; "
                     "check that it was copied whole.")
        if text.startswith(TOKEN_PREFIX) and self._signer is not None:
            return self._token(text)
        parsed = parse_key(text)
        if parsed is None:
            if text.startswith(("sk-", "sk_")):
                raise MalformedKey(
                    "This looks like a provider key, not a keystead key.",
                    hint="Provider keys stay in the gateway's vault; use the ksk_... key your "
                         "platform team gave you, and rotate the provider key if it leaked.",
                )
            raise MalformedKey(
                "The API key is not a valid keystead key.",
                hint=f"keystead keys start with {PREFIX} and carry a checksum; "
                     "check that it was copied whole.",
            )
        found = self._credentials.get(parsed.key_id)
        record, previous = found if found is not None else (None, False)
        key_hash = (record.previous_hash if previous else record.key_hash) if record else None
        if record is None or key_hash is None or not self._hasher.matches(text, key_hash):
            error = UnknownKey(f"Unknown API key (id {parsed.key_id}).",
                               hint="It may have been deleted; ask for a new one.")
            # Only an id this table knows: anyone can make a valid checksum for a made-up id.
            error.key_id = record.id if record is not None else None
            raise error
        try:
            self._check_status(record, previous, parsed.key_id)
        except AuthError as error:
            error.key_id = record.id
            raise
        return record, None

    def _token(self, text: str) -> tuple[KeyRecord, TokenClaims]:
        assert self._signer is not None
        try:
            claims = self._signer.verify(text)
        except TokenError:
            raise MalformedKey("The token is not a valid keystead token.",
                               hint="Tokens are minted by your backend (POST "
                                    "/v1/keystead/tokens); check it was copied whole.") from None
        now = self._clock()
        if claims.expires_at <= now:
            raise ExpiredKey(f"The token expired on {_when(claims.expires_at)}.",
                             hint="Ask your backend for a fresh one; tokens live minutes.")
        record = self._by_id.get(claims.key_id)
        if record is None:
            raise UnknownKey(f"The key this token was minted from ({claims.key_id}) is gone.",
                             hint="Ask your backend for a fresh token.")
        try:
            self._token_status(record, claims, now)
        except AuthError as error:
            error.key_id = record.id
            raise
        return record, claims

    def _token_status(self, record: KeyRecord, claims: TokenClaims, now: float) -> None:
        current = claims.credential_id == record.current_credential
        in_grace = (claims.credential_id == record.previous_credential_id
                    and record.previous_expires_at is not None
                    and record.previous_expires_at > now)
        if not current and not in_grace and record.revoked_at is None:
            raise RotatedKey(
                f"The key this token was minted from ({record.name}) was rotated on "
                f"{_when(record.rotated_at or 0)}.", hint="Ask your backend for a fresh token.")
        self._check_status(record, False, claims.key_id)

    def _check_status(self, record: KeyRecord, previous: bool, credential: str) -> None:
        if record.revoked_at is not None:
            raise RevokedKey(
                f"API key {record.id} ({record.name}) was revoked on {_when(record.revoked_at)}.",
                hint="Ask the key's owner or your platform team for its replacement.",
            )
        if previous and (record.previous_expires_at is None
                         or record.previous_expires_at <= self._clock()):
            raise RotatedKey(
                f"API key {credential} ({record.name}) was replaced by a rotation on "
                f"{_when(record.rotated_at or 0)}; its grace period is over.",
                hint="Use the key that replaced it; its owner or your platform team has it.")
        if record.disabled_at is not None:
            raise DisabledKey(
                f"API key {record.id} ({record.name}) is disabled since "
                f"{_when(record.disabled_at)}.",
                hint="It was paused by an operator; ask your platform team to enable it.",
            )
        if record.expires_at is not None and record.expires_at <= self._clock():
            raise ExpiredKey(
                f"API key {record.id} ({record.name}) expired on {_when(record.expires_at)}.",
                hint="Ask your platform team for a new key.",
            )


def _credentials(records: Iterable[KeyRecord]) -> dict[str, tuple[KeyRecord, bool]]:
    table: dict[str, tuple[KeyRecord, bool]] = {}
    for record in records:
        table[record.current_credential] = (record, False)
        if record.previous_credential_id is not None:
            table[record.previous_credential_id] = (record, True)
    return table


def bearer_token(header: bytes | str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    value = (header.decode("latin-1") if isinstance(header, bytes) else header).strip()
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
