"""The vault: named secrets sealed by the master key, kept in the store (P3).

The vault also holds the pepper that key hashes are keyed with, so the database alone is never
enough to test a guessed key.
"""

from __future__ import annotations

import os
from pathlib import Path

from keystead.state.records import SealedRecord
from keystead.state.store import Store
from keystead.vault.envelope import (
    MasterKey,
    MasterKeyError,
    SealedSecret,
    VaultError,
    open_secret,
    rewrap,
    seal_secret,
)

__all__ = ["PEPPER_ID", "Vault", "load_master_key"]

PEPPER_ID = "system:key-pepper"


def load_master_key(text: str | None, file: Path | None) -> MasterKey:
    if text:
        return MasterKey.from_text(text)
    if file is not None:
        if not file.is_file():
            raise MasterKeyError(f"master key file {file} does not exist")
        try:
            text = file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:  # no permission; not base64 text at all
            raise MasterKeyError(f"master key file {file} cannot be read: "
                                 f"{getattr(exc, 'strerror', None) or 'not ASCII text'}") from None
        return MasterKey.from_text(text)
    raise MasterKeyError(
        "no master key: set KEYSTEAD_MASTER_KEY (or vault.master_key_file in the config); "
        "`keystead init` writes one into .env"
    )


class Vault:
    def __init__(self, store: Store, master: MasterKey):
        self._store = store
        self._master = master

    @property
    def master_key_id(self) -> str:
        return self._master.key_id

    async def put(self, secret_id: str, value: bytes) -> None:
        sealed = seal_secret(self._master, secret_id, value)
        await self._store.put_secret(SealedRecord(secret_id, sealed.wrapped_key, sealed.ciphertext,
                                                  sealed.master_key_id))

    async def get(self, secret_id: str) -> bytes:
        record = await self._store.get_secret(secret_id)
        if record is None:
            raise VaultError(f"no secret named {secret_id!r} in the vault")
        return open_secret(self._master, secret_id, _sealed(record))

    async def delete(self, secret_id: str) -> None:
        await self._store.delete_secret(secret_id)

    async def pepper(self) -> bytes:
        """The key-hash pepper, created on first use.

        Insert-if-absent, then read back: two processes opening a new database at once agree
        on whichever pepper was written first.
        """
        if await self._store.get_secret(PEPPER_ID) is None:
            sealed = seal_secret(self._master, PEPPER_ID, os.urandom(32))
            await self._store.add_secret(SealedRecord(PEPPER_ID, sealed.wrapped_key,
                                                      sealed.ciphertext, sealed.master_key_id))
        return await self.get(PEPPER_ID)

    async def rotate_master(self, new: MasterKey) -> int:
        """Re-seal every data key under `new`; returns how many were re-sealed.

        Every secret is opened with the old key first and all are written in one transaction,
        so a wrong old key or a failure part-way changes nothing.
        """
        records = await self._store.list_secrets()
        resealed = []
        for record in records:
            sealed = rewrap(self._master, new, record.id, _sealed(record))
            resealed.append(SealedRecord(record.id, sealed.wrapped_key, sealed.ciphertext,
                                         sealed.master_key_id))
        await self._store.replace_secrets(resealed)
        self._master = new
        return len(resealed)


def _sealed(record: SealedRecord) -> SealedSecret:
    return SealedSecret(record.wrapped_key, record.ciphertext, record.master_key_id)
