"""The reference policy on its own: keystead's own secrets are never a provider key (in the config
file too), `admin.secret_refs` says what the admin API may name, and the values read from a
reference are checked before they can become a key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keystead.config.load import ConfigError, parse_config
from keystead.config.model import AdminSecretRefs
from keystead.providers.ref_policy import admin_refusal, own_secret, own_variable
from keystead.providers.secret_refs import SecretRefError, resolve_reference


def config_with_key(key: object) -> None:
    parse_config({"providers": {"p": {"type": "openai", "base_url": "https://x/v1",
                                      **({"api_keys": key} if isinstance(key, list)
                                         else {"api_key": key})}}},
                 {"KEYSTEAD_MASTER_KEY": "m" * 44, "KEYSTEAD_ADMIN_TOKEN": "t" * 30,
                  "OPENAI_API_KEY": "sk-fine"}, source="keystead.yaml")


@pytest.mark.parametrize("key", ["${KEYSTEAD_MASTER_KEY}", "env:KEYSTEAD_ADMIN_TOKEN",
                                 "vault:system:key-pepper",
                                 ["${OPENAI_API_KEY}", "${KEYSTEAD_MASTER_KEY}"],
                                 "file:/etc/keystead/.env"])
def test_the_config_file_cannot_make_keysteads_own_secret_a_provider_key(key: object) -> None:
    with pytest.raises(ConfigError, match=r"providers\.p\.api_keys?(\.1)?: .*(own variables|"
                                          r"environment file|key pepper)") as refused:
        config_with_key(key)
    assert "m" * 44 not in str(refused.value) and "t" * 30 not in str(refused.value)


def test_the_config_file_still_takes_a_providers_own_key() -> None:
    config_with_key("${OPENAI_API_KEY}")
    config_with_key(["${OPENAI_API_KEY}", "file:/run/secrets/openai"])


def test_own_variables_and_files(tmp_path: Path) -> None:
    assert own_variable("KEYSTEAD_MASTER_KEY") and own_variable("keystead_anything")
    assert not own_variable("OPENAI_API_KEY")
    master = tmp_path / "master.key"
    master.write_text("x")
    (tmp_path / "link").symlink_to(master)
    assert own_secret(f"file:{master}", [master]) is not None
    assert own_secret(f"file:{tmp_path}/link", [master]) is not None  # through a link
    assert own_secret(f"file:{tmp_path}/sub/../master.key", [master]) is not None
    assert own_secret(f"file:{tmp_path}/other", [master]) is None
    assert own_secret("file:relative/.env") is not None
    assert own_secret("env:OPENAI_API_KEY") is None
    assert own_secret("vault:system:key-pepper") is not None  # the pepper of every key's HMAC
    assert own_secret("vault:provider:openai") is None
    assert own_secret("aws-sm:prod/openai") is None


def test_the_master_key_file_named_by_the_environment_is_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    master = tmp_path / "mk"
    monkeypatch.setenv("KEYSTEAD_MASTER_KEY_FILE", str(master))
    assert own_secret(f"file:{master}") is not None


def test_admin_secret_refs_allow_by_name_pattern_and_directory(tmp_path: Path) -> None:
    policy = AdminSecretRefs(allow_env=("OPENAI_API_KEY", "AZURE_*"),
                             allow_file_dirs=(str(tmp_path / "secrets"),),
                             allow_aws_sm=("prod/llm/*",), allow_hcvault=("secret/llm/*",))
    allowed = ["env:OPENAI_API_KEY", "env:AZURE_OPENAI_KEY_2", f"file:{tmp_path}/secrets/a",
               "aws-sm:prod/llm/openai#key", "hcvault:secret/llm/openai#api_key",
               "vault:provider:p"]
    assert [admin_refusal(ref, policy) for ref in allowed] == [None] * len(allowed)
    refused = {"env:OPENAI_API_KEY_2": "admin.secret_refs.allow_env",
               "env:azure_x": "admin.secret_refs.allow_env",
               f"file:{tmp_path}/secrets-other/a": "admin.secret_refs.allow_file_dirs",
               f"file:{tmp_path}/secrets/../a": "admin.secret_refs.allow_file_dirs",
               "aws-sm:prod/other#key": "admin.secret_refs.allow_aws_sm",
               "hcvault:kv/llm/openai#key": "admin.secret_refs.allow_hcvault"}
    assert {ref: admin_refusal(ref, policy) for ref in refused} == refused
    nothing = AdminSecretRefs()  # the default: the admin API names no reference at all
    assert all(admin_refusal(ref, nothing) is not None for ref in allowed[:-1])


@pytest.mark.parametrize(("raw", "words"), [
    ({"allow_env": ["OPENAI KEY"]}, "not an environment variable name"),
    ({"allow_file_dirs": ["run/secrets"]}, "absolute directory"),
    ({"allow_file_dirs": ["/"]}, "absolute directory other than /"),
    ({"allow_files": ["/x"]}, "unknown setting"),
])
def test_admin_secret_refs_are_validated(raw: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as refused:
        parse_config({"admin": {"secret_refs": raw}}, {}, source="keystead.yaml")
    assert "admin.secret_refs" in str(refused.value)


def test_a_value_that_is_not_one_line_is_never_a_key(tmp_path: Path) -> None:
    env_file = tmp_path / "keys"
    env_file.write_text("OPENAI_API_KEY=sk-a\nOTHER=sk-b\n")
    spaced = tmp_path / "spaced"
    spaced.write_text("sk-a sk-b")
    for path in (env_file, spaced):
        with pytest.raises(SecretRefError, match="not one line of printable ASCII"):
            asyncio.run(resolve_reference("p", f"file:{path}"))
