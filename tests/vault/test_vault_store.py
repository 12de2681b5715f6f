"""The vault on a real store (SQLite in tmp_path): secrets, the key pepper, master-key rotation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from keystead.state.sql_store import SQLStore
from keystead.vault.envelope import MasterKey, VaultError
from keystead.vault.store import PEPPER_ID, Vault, load_master_key
from support import with_open_store

T = TypeVar("T")


def new_master() -> MasterKey:
    return MasterKey.from_text(MasterKey.generate_text())


def with_store(path: Path, body: Callable[[SQLStore], Awaitable[T]]) -> T:
    return with_open_store(SQLStore(f"sqlite:///{path}"), body)


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "keystead.db"


def test_put_then_get(db):
    master = new_master()

    async def body(store: SQLStore) -> tuple[bytes, bytes, bytes]:
        vault = Vault(store, master)
        await vault.put("provider.openai", b"sk-openai")
        await vault.put("provider.azure", b"azure-key")
        first = await vault.get("provider.openai")
        await vault.put("provider.openai", b"sk-openai-rotated")
        stored = await store.get_secret("provider.openai")
        assert stored is not None and b"sk-openai" not in stored.ciphertext
        assert stored.master_key_id == master.key_id == vault.master_key_id
        return first, await vault.get("provider.openai"), await vault.get("provider.azure")

    assert with_store(db, body) == (b"sk-openai", b"sk-openai-rotated", b"azure-key")


def test_secrets_survive_reopening_the_store(db):
    master = new_master()
    with_store(db, lambda store: Vault(store, master).put("provider.openai", b"sk-1"))
    assert with_store(db, lambda store: Vault(store, master).get("provider.openai")) == b"sk-1"


def test_missing_secret_is_a_vault_error(db):
    with pytest.raises(VaultError, match=r"no secret named 'provider\.nope'"):
        with_store(db, lambda store: Vault(store, new_master()).get("provider.nope"))


def test_deleted_secret_is_gone(db):
    master = new_master()

    async def body(store: SQLStore) -> None:
        vault = Vault(store, master)
        await vault.put("provider.x", b"v")
        await vault.delete("provider.x")
        with pytest.raises(VaultError, match="no secret named"):
            await vault.get("provider.x")

    with_store(db, body)


def test_pepper_is_created_once_and_stable_across_reopen(db):
    master = new_master()

    async def twice(store: SQLStore) -> tuple[bytes, bytes]:
        vault = Vault(store, master)
        return await vault.pepper(), await vault.pepper()

    first, second = with_store(db, twice)
    assert first == second
    assert len(first) == 32
    reopened = with_store(db, lambda store: Vault(store, master).pepper())
    assert reopened == first
    secrets = with_store(db, lambda store: store.list_secrets())
    assert [s.id for s in secrets] == [PEPPER_ID]
    assert first not in secrets[0].ciphertext


def test_pepper_differs_per_installation(tmp_path):
    master = new_master()
    a = with_store(tmp_path / "a.db", lambda store: Vault(store, master).pepper())
    b = with_store(tmp_path / "b.db", lambda store: Vault(store, master).pepper())
    assert a != b


def test_pepper_needs_the_right_master_key(db):
    with_store(db, lambda store: Vault(store, new_master()).pepper())
    with pytest.raises(VaultError, match="sealed by master key"):
        with_store(db, lambda store: Vault(store, new_master()).pepper())


def test_rotate_master_reseals_everything(db):
    old, new = new_master(), new_master()

    async def fill_and_rotate(store: SQLStore) -> tuple[bytes, int, str]:
        vault = Vault(store, old)
        pepper = await vault.pepper()
        await vault.put("provider.openai", b"sk-openai")
        await vault.put("provider.azure", b"azure-key")
        count = await vault.rotate_master(new)
        # The same Vault now works with the new key.
        assert await vault.get("provider.openai") == b"sk-openai"
        return pepper, count, vault.master_key_id

    pepper, count, key_id = with_store(db, fill_and_rotate)
    assert count == 3
    assert key_id == new.key_id

    async def check(store: SQLStore) -> None:
        records = await store.list_secrets()
        assert {r.master_key_id for r in records} == {new.key_id}
        with_new = Vault(store, new)
        assert await with_new.pepper() == pepper
        assert await with_new.get("provider.openai") == b"sk-openai"
        assert await with_new.get("provider.azure") == b"azure-key"
        with_old = Vault(store, old)
        for secret_id in (PEPPER_ID, "provider.openai", "provider.azure"):
            with pytest.raises(VaultError, match=old.key_id):
                await with_old.get(secret_id)

    with_store(db, check)


def test_rotate_with_a_wrong_old_key_changes_nothing(db):
    right, wrong, new = new_master(), new_master(), new_master()

    async def fill(store: SQLStore) -> list:
        vault = Vault(store, right)
        await vault.pepper()
        await vault.put("provider.openai", b"sk-openai")
        return await store.list_secrets()

    before = with_store(db, fill)

    async def rotate_wrong(store: SQLStore) -> None:
        vault = Vault(store, wrong)
        with pytest.raises(VaultError, match=wrong.key_id):
            await vault.rotate_master(new)
        assert vault.master_key_id == wrong.key_id  # the vault did not switch keys either

    with_store(db, rotate_wrong)

    async def check(store: SQLStore) -> bytes:
        after = await store.list_secrets()
        assert sorted(after, key=lambda r: r.id) == sorted(before, key=lambda r: r.id)
        return await Vault(store, right).get("provider.openai")

    assert with_store(db, check) == b"sk-openai"


def test_rotate_when_one_secret_is_corrupt_changes_nothing(db):
    old, new = new_master(), new_master()

    async def body(store: SQLStore) -> None:
        vault = Vault(store, old)
        await vault.put("a", b"1")
        await vault.put("b", b"2")
        # A record sealed under another master key: rotation must refuse before writing anything.
        await Vault(store, new_master()).put("c", b"3")
        before = sorted(await store.list_secrets(), key=lambda r: r.id)
        with pytest.raises(VaultError, match="'c'"):
            await vault.rotate_master(new)
        assert sorted(await store.list_secrets(), key=lambda r: r.id) == before
        assert await vault.get("a") == b"1"

    with_store(db, body)


def test_rotate_an_empty_vault(db):
    assert with_store(db, lambda store: Vault(store, new_master()).rotate_master(new_master())) == 0


def test_load_master_key_from_text_or_file(tmp_path):
    text = MasterKey.generate_text()
    key_file = tmp_path / "master.key"
    key_file.write_text(text + "\n", encoding="ascii")
    assert load_master_key(text, None) == MasterKey.from_text(text)
    assert load_master_key(None, key_file) == MasterKey.from_text(text)
    ignored = tmp_path / "ignored-when-text-is-given"
    assert load_master_key(text, ignored) == MasterKey.from_text(text)


def test_load_master_key_errors_say_what_to_do(tmp_path):
    with pytest.raises(VaultError, match=r"master key file .*missing\.key does not exist"):
        load_master_key(None, tmp_path / "missing.key")
    with pytest.raises(VaultError, match="set KEYSTEAD_MASTER_KEY"):
        load_master_key(None, None)
    with pytest.raises(VaultError, match="32 random bytes"):
        load_master_key("short", None)


def test_processes_racing_to_create_the_pepper_agree_on_one(tmp_path) -> None:
    """Several vaults opening a new database at once must end with a single pepper."""

    from keystead.state.sql_store import SQLStore
    from keystead.vault.envelope import MasterKey
    from keystead.vault.store import Vault

    master = MasterKey.from_text(MasterKey.generate_text())
    url = f"sqlite:///{tmp_path / 'race.db'}"

    async def main() -> set[bytes]:
        stores = [SQLStore(url) for _ in range(4)]
        for store in stores:
            await store.open()
        try:
            peppers = await asyncio.gather(*(Vault(s, master).pepper() for s in stores))
        finally:
            for store in stores:
                await store.close()
        return set(peppers)

    assert len(asyncio.run(main())) == 1
