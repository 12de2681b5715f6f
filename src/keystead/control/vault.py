"""Master-key rotation (P3): every data key re-sealed under the new master key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keystead.vault.envelope import MasterKey

if TYPE_CHECKING:
    from keystead.control.plane import ControlPlane

__all__ = ["VaultService"]


class VaultService:
    def __init__(self, runtime: ControlPlane):
        self.rt = runtime

    async def rotate_master(self, new_key_text: str) -> int:
        new = MasterKey.from_text(new_key_text)
        return await self.rt.vault.rotate_master(new)
