"""keystead.config: where the config comes from, how references resolve, what is refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from keystead.config.load import ConfigError, load_config, parse_config
from keystead.config.model import (
    DEFAULT_NAME_PATTERN,
    LoggingConfig,
    ModelPrice,
    ServerConfig,
    UsageConfig,
)
from keystead.config.template import CONFIG_TEMPLATE
from keystead.vault.envelope import MasterKey

MASTER = MasterKey.generate_text()


def write(path: Path, data: dict[str, Any] | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def parse(raw: dict[str, Any], env: dict[str, str] | None = None):
    return parse_config(raw, env or {}, source="test.yaml")


# --- finding the file ---------------------------------------------------------------------------


def test_embedded_defaults_when_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = load_config(None, environ={})
    assert loaded.path is None
    assert loaded.base_dir == tmp_path
    config = loaded.config
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.database.url == "sqlite:///keystead.db"
    assert config.providers == {}
    assert config.vault.master_key is None
    assert config.admin.token is None
    assert config.keys.name_pattern == DEFAULT_NAME_PATTERN


def test_keystead_yaml_in_the_working_directory_is_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "keystead.yaml", {"server": {"port": 9001}})
    loaded = load_config(None, environ={})
    assert loaded.path == Path("keystead.yaml")
    assert loaded.config.server.port == 9001


def test_explicit_config_that_does_not_exist_is_an_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"config file .*nope\.yaml does not exist"):
        load_config(missing, environ={})


def test_keystead_config_variable_selects_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "keystead.yaml", {"server": {"port": 1111}})
    other = write(tmp_path / "other.yaml", {"server": {"port": 2222}})
    loaded = load_config(None, environ={"KEYSTEAD_CONFIG": str(other)})
    assert loaded.path == other
    assert loaded.config.server.port == 2222


def test_keystead_config_variable_is_read_from_the_process_environment(tmp_path, monkeypatch):
    other = write(tmp_path / "other.yaml", {"server": {"port": 3333}})
    monkeypatch.setenv("KEYSTEAD_CONFIG", str(other))
    assert load_config().config.server.port == 3333


def test_keystead_config_pointing_nowhere_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"KEYSTEAD_CONFIG points to .*gone\.yaml"):
        load_config(None, environ={"KEYSTEAD_CONFIG": str(tmp_path / "gone.yaml")})


def test_explicit_path_wins_over_keystead_config(tmp_path):
    explicit = write(tmp_path / "a.yaml", {"server": {"port": 4001}})
    other = write(tmp_path / "b.yaml", {"server": {"port": 4002}})
    loaded = load_config(explicit, environ={"KEYSTEAD_CONFIG": str(other)})
    assert loaded.config.server.port == 4001


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    sub = tmp_path / "deploy"
    sub.mkdir()
    loaded = load_config(write(sub / "keystead.yaml", {}), environ={})
    assert loaded.base_dir == sub.resolve()
    assert loaded.resolve_path("keystead.db") == sub.resolve() / "keystead.db"
    assert loaded.resolve_path("/abs/x.db") == Path("/abs/x.db")


def test_empty_file_gives_the_defaults(tmp_path):
    loaded = load_config(write(tmp_path / "keystead.yaml", ""), environ={})
    assert loaded.config.server == ServerConfig()


def test_invalid_yaml_names_the_file(tmp_path):
    path = write(tmp_path / "keystead.yaml", "server: [unclosed\n")
    with pytest.raises(ConfigError, match=r"keystead\.yaml: not valid YAML"):
        load_config(path, environ={})


def test_invalid_yaml_points_at_the_line_without_quoting_it(tmp_path):
    # A line that does not parse may hold a raw secret: the message (printed, logged, stored
    # in a reload's event) gives its position only.
    path = write(tmp_path / "keystead.yaml",
                 'providers:\n  openai:\n    api_key: "sk-live-42x\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    message = str(raised.value)
    assert "sk-live-42x" not in message
    assert "while scanning a quoted scalar at line 3, column 14" in message


def test_top_level_must_be_a_mapping(tmp_path):
    path = write(tmp_path / "keystead.yaml", "- server\n- database\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path, environ={})


# --- ${VAR} references --------------------------------------------------------------------------


def test_variable_reference_is_resolved(tmp_path):
    path = write(tmp_path / "keystead.yaml",
                 "server:\n  host: ${BIND_HOST}\n  port: ${BIND_PORT}\n")
    loaded = load_config(path, environ={"BIND_HOST": "0.0.0.0", "BIND_PORT": "9090"})
    assert loaded.config.server.host == "0.0.0.0"
    assert loaded.config.server.port == 9090


def test_variable_default_is_used_when_unset_or_empty():
    raw = {"server": {"host": "${BIND_HOST:-10.0.0.1}"}}
    assert parse(raw).server.host == "10.0.0.1"
    assert parse(raw, {"BIND_HOST": ""}).server.host == "10.0.0.1"
    assert parse(raw, {"BIND_HOST": "192.168.1.5"}).server.host == "192.168.1.5"


def test_variable_reference_inside_a_longer_string():
    raw = {"database": {"url": "sqlite:///${DATA_DIR:-/var/lib}/keystead.db"}}
    assert parse(raw).database.url == "sqlite:////var/lib/keystead.db"
    assert parse(raw, {"DATA_DIR": "/srv"}).database.url == "sqlite:////srv/keystead.db"


def test_empty_default_is_allowed():
    assert parse({"providers": {"local": {"type": "openai-compatible",
                                          "base_url": "http://h/v1${SUFFIX:-}"}}}
                 ).providers["local"].base_url == "http://h/v1"


def test_unset_variable_names_the_dotted_field_and_the_variable():
    raw = {"providers": {"openai": {"type": "openai", "base_url": "https://api.openai.com/v1",
                                    "api_key": "${OPENAI_API_KEY}"}}}
    with pytest.raises(ConfigError) as info:
        parse(raw)
    message = str(info.value)
    assert "providers.openai.api_key" in message
    assert "OPENAI_API_KEY is not set" in message
    assert message.startswith("test.yaml:")


def test_unset_variable_in_a_list_names_the_index():
    raw = {"providers": {"m": {"type": "mock", "models": ["gpt-4o", "${SECOND_MODEL}"]}}}
    with pytest.raises(ConfigError, match=r"providers\.m\.models\.1: .*SECOND_MODEL"):
        parse(raw)


def test_resolved_values_are_not_resolved_again():
    raw = {"server": {"host": "${A}"}}
    assert parse(raw, {"A": "${B}", "B": "nope"}).server.host == "${B}"


# --- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"providers": {"openai": {"type": "openai", "base_url": "https://api.openai.com/v1",
                                   "api_key": "sk-proj-abc123"}}}, "providers.openai.api_key"),
        ({"admin": {"token": "hunter2-admin"}}, "admin.token"),
        ({"vault": {"master_key": MASTER}}, "vault.master_key"),
    ],
)
def test_raw_secret_in_config_is_refused(raw, field):
    with pytest.raises(ConfigError) as info:
        parse(raw)
    message = str(info.value)
    assert f"{field}: holds a raw secret" in message
    assert "${VAR}" in message
    # The refusal never echoes the secret itself.
    secret = "sk-proj-abc123" if "openai" in field else ("hunter2-admin" if "admin" in field
                                                        else MASTER)
    assert secret not in message


def test_secret_with_a_literal_default_is_refused():
    # ${VAR:-value} would put the value in the file: still a raw secret.
    with pytest.raises(ConfigError, match=r"admin\.token: holds a raw secret"):
        parse({"admin": {"token": "${ADMIN:-letmein}"}})


def test_secret_half_reference_is_refused():
    with pytest.raises(ConfigError, match=r"admin\.token: holds a raw secret"):
        parse({"admin": {"token": "prefix-${ADMIN_TOKEN}"}}, {"ADMIN_TOKEN": "x"})


def test_env_reference_works_for_secret_fields():
    raw = {"providers": {"openai": {"type": "openai", "base_url": "https://api.openai.com/v1",
                                    "api_key": "env:OPENAI_API_KEY"}},
           "admin": {"token": "env:ADMIN"}}
    config = parse(raw, {"OPENAI_API_KEY": "sk-real", "ADMIN": "adm"})
    assert config.providers["openai"].api_key.get_secret_value() == "sk-real"
    assert config.admin.token.get_secret_value() == "adm"


def test_env_reference_to_an_unset_variable_names_the_field():
    with pytest.raises(ConfigError, match=r"admin\.token: environment variable ADMIN is not set"):
        parse({"admin": {"token": "env:ADMIN"}})


def test_env_prefix_outside_secret_fields_is_plain_text():
    assert parse({"server": {"host": "env:HOST"}}).server.host == "env:HOST"


def test_vault_reference_is_accepted_for_a_provider_key():
    raw = {"providers": {"openai": {"type": "openai", "base_url": "https://api.openai.com/v1",
                                    "api_key": "vault:provider.openai"}}}
    key = parse(raw).providers["openai"].api_key
    assert key.get_secret_value() == "vault:provider.openai"


def test_secret_values_do_not_print():
    config = parse({"admin": {"token": "${ADMIN}"}}, {"ADMIN": "very-secret-token"})
    assert "very-secret-token" not in repr(config)
    assert "very-secret-token" not in str(config.admin)


# --- unknown keys and wrong types ----------------------------------------------------------------


def test_misspelt_section_fails_naming_it():
    with pytest.raises(ConfigError) as info:
        parse({"servr": {"port": 1}})
    message = str(info.value)
    assert "servr: unknown setting" in message
    assert "misspelt?" in message


def test_misspelt_provider_key_fails_naming_the_dotted_path(tmp_path):
    path = write(tmp_path / "keystead.yaml",
                 {"providers": {"x": {"type": "openai-compatible",
                                      "base_ur": "http://localhost:8000/v1"}}})
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert "providers.x.base_ur: unknown setting" in message
    assert str(path) in message


def test_misspelt_nested_option_fails_naming_the_dotted_path():
    with pytest.raises(ConfigError, match=r"usage\.flush_intervl_s: unknown setting"):
        parse({"usage": {"flush_intervl_s": 2}})


def test_wrong_type_names_the_field():
    with pytest.raises(ConfigError) as info:
        parse({"server": {"port": "eighty"}})
    message = str(info.value)
    assert "server.port:" in message
    assert "integer" in message


def test_out_of_range_value_names_the_field():
    with pytest.raises(ConfigError, match=r"server\.port: .*65535"):
        parse({"server": {"port": 70000}})


def test_invalid_log_level_names_the_field():
    with pytest.raises(ConfigError, match=r"logging\.level: .*'debug'"):
        parse({"logging": {"level": "verbose"}})


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse({"server": {"port": "x", "workers": 0}, "servr": {}})
    message = str(info.value)
    for where in ("server.port:", "server.workers:", "servr:"):
        assert where in message


def test_invalid_name_pattern_is_refused():
    with pytest.raises(ConfigError, match=r"keys\.name_pattern: .*not a valid regular expression"):
        parse({"keys": {"name_pattern": "([a-z"}})


def test_unknown_database_scheme_is_refused():
    with pytest.raises(ConfigError, match=r"database\.url: .*sqlite:///"):
        parse({"database": {"url": "mysql://db/keystead"}})


# --- .env and environment overrides --------------------------------------------------------------


def test_dotenv_beside_the_file_is_loaded(tmp_path):
    (tmp_path / ".env").write_text("KEYSTEAD_ADMIN_TOKEN=from-dotenv\nBIND_PORT=7070\n")
    path = write(tmp_path / "keystead.yaml",
                 "server:\n  port: ${BIND_PORT}\nadmin:\n  token: ${KEYSTEAD_ADMIN_TOKEN}\n")
    config = load_config(path, environ={}).config
    assert config.server.port == 7070
    assert config.admin.token.get_secret_value() == "from-dotenv"


def test_dotenv_does_not_override_the_real_environment(tmp_path):
    (tmp_path / ".env").write_text("BIND_PORT=7070\nBIND_HOST=10.1.1.1\n")
    path = write(tmp_path / "keystead.yaml",
                 "server:\n  port: ${BIND_PORT}\n  host: ${BIND_HOST}\n")
    config = load_config(path, environ={"BIND_PORT": "6060"}).config
    assert config.server.port == 6060  # the environment wins
    assert config.server.host == "10.1.1.1"  # the .env fills what the environment lacks


def test_dotenv_with_process_environment_fills_only_missing_variables(tmp_path, monkeypatch):
    # Register both names with monkeypatch so whatever load_config puts in os.environ is undone.
    for name in ("KS_TEST_FROM_ENV", "KS_TEST_DOTENV_ONLY"):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    monkeypatch.setenv("KS_TEST_FROM_ENV", "real")
    (tmp_path / ".env").write_text("KS_TEST_FROM_ENV=dotenv\nKS_TEST_DOTENV_ONLY=dotenv-only\n")
    path = write(tmp_path / "keystead.yaml",
                 "server:\n  host: ${KS_TEST_FROM_ENV}-${KS_TEST_DOTENV_ONLY}\n")
    assert load_config(path).config.server.host == "real-dotenv-only"
    assert os.environ["KS_TEST_FROM_ENV"] == "real"
    assert os.environ["KS_TEST_DOTENV_ONLY"] == "dotenv-only"


def test_dotenv_is_not_read_into_the_process_when_environ_is_given(tmp_path, monkeypatch):
    monkeypatch.delenv("KS_TEST_ISOLATED", raising=False)
    (tmp_path / ".env").write_text("KS_TEST_ISOLATED=1\n")
    load_config(write(tmp_path / "keystead.yaml", {}), environ={})
    assert "KS_TEST_ISOLATED" not in os.environ


def test_database_url_variable_fills_the_database_url():
    config = parse({}, {"KEYSTEAD_DATABASE_URL": "sqlite:////srv/keystead/state.db"})
    assert config.database.url == "sqlite:////srv/keystead/state.db"


def test_database_url_variable_does_not_replace_a_url_in_the_file():
    config = parse({"database": {"url": "sqlite:///from-file.db"}},
                   {"KEYSTEAD_DATABASE_URL": "sqlite:///from-env.db"})
    assert config.database.url == "sqlite:///from-file.db"


def test_master_key_and_admin_token_variables_fill_empty_settings():
    config = parse({}, {"KEYSTEAD_MASTER_KEY": MASTER, "KEYSTEAD_ADMIN_TOKEN": "adm",
                        "KEYSTEAD_MASTER_KEY_FILE": "/etc/keystead/master.key"})
    assert config.vault.master_key.get_secret_value() == MASTER
    assert config.vault.master_key_file == "/etc/keystead/master.key"
    assert config.admin.token.get_secret_value() == "adm"


def test_invalid_database_url_from_the_environment_is_refused():
    with pytest.raises(ConfigError, match=r"database\.url"):
        parse({}, {"KEYSTEAD_DATABASE_URL": "redis://localhost"})


# --- providers ----------------------------------------------------------------------------------


def test_openai_provider_needs_a_base_url():
    with pytest.raises(ConfigError, match=r"providers\.openai: .*base_url is required"):
        parse({"providers": {"openai": {"type": "openai", "api_key": "${K}"}}}, {"K": "sk"})


def test_openai_provider_needs_an_api_key():
    with pytest.raises(ConfigError, match=r"providers\.openai: .*api_key is required"):
        parse({"providers": {"openai": {"type": "openai",
                                        "base_url": "https://api.openai.com/v1"}}})


def test_azure_provider_needs_an_api_key():
    with pytest.raises(ConfigError, match=r"providers\.az: .*api_key is required for type azure"):
        parse({"providers": {"az": {"type": "azure", "base_url": "https://r.openai.azure.com"}}})


def test_base_url_must_be_http_or_https():
    with pytest.raises(ConfigError, match=r"providers\.local: .*http:// or https://"):
        parse({"providers": {"local": {"type": "openai-compatible",
                                       "base_url": "localhost:11434/v1"}}})


def test_openai_compatible_provider_needs_no_key():
    config = parse({"providers": {"local": {"type": "openai-compatible",
                                            "base_url": "http://localhost:11434/v1",
                                            "models": ["llama*"]}}})
    local = config.providers["local"]
    assert local.api_key is None
    assert local.models == ("llama*",)


def test_mock_provider_needs_nothing():
    assert parse({"providers": {"mock": {"type": "mock"}}}).providers["mock"].base_url is None


def test_unknown_provider_type_is_refused():
    with pytest.raises(ConfigError, match=r"providers\.x\.type: .*'openai'"):
        parse({"providers": {"x": {"type": "bedrock", "base_url": "https://a"}}})


def test_provider_name_must_be_lowercase():
    with pytest.raises(ConfigError, match="provider name 'OpenAI' must be lowercase"):
        parse({"providers": {"OpenAI": {"type": "mock"}}})


def test_a_complete_openai_provider_loads(tmp_path):
    path = write(tmp_path / "keystead.yaml", """\
providers:
  openai:
    type: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    models: [gpt-4o-mini, "gpt-4.1*"]
""")
    openai = load_config(path, environ={"OPENAI_API_KEY": "sk-test"}).config.providers["openai"]
    assert openai.type == "openai"
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.api_key.get_secret_value() == "sk-test"
    assert openai.models == ("gpt-4o-mini", "gpt-4.1*")


def test_price_overrides_are_decimals(tmp_path):
    path = write(tmp_path / "keystead.yaml",
                 "prices:\n  my-finetune:\n    input_per_mtok: 0.30\n    output_per_mtok: 1.20\n")
    prices = load_config(path, environ={}).config.prices
    assert prices["my-finetune"] == ModelPrice(input_per_mtok="0.3", output_per_mtok="1.2")
    assert prices["my-finetune"].cached_input_per_mtok is None


# --- the `keystead init` template ---------------------------------------------------------------


def test_init_template_loads_cleanly(tmp_path):
    path = write(tmp_path / "keystead.yaml", CONFIG_TEMPLATE)
    loaded = load_config(path, environ={"KEYSTEAD_MASTER_KEY": MASTER,
                                        "KEYSTEAD_ADMIN_TOKEN": "kst_admin_x"})
    config = loaded.config
    assert config.vault.master_key.get_secret_value() == MASTER
    assert config.admin.token.get_secret_value() == "kst_admin_x"
    assert config.providers["mock"].type == "mock"
    # Names of its own: the mock never answers a real model's name (issue 12).
    assert config.providers["mock"].models == ("mock-chat", "mock-embedding")
    assert config.keys.environments == ("dev", "staging", "prod")
    # "Every value shown is the default."
    assert config.server == ServerConfig()
    assert config.usage == UsageConfig()
    assert config.logging == LoggingConfig()
    assert config.database.url == "sqlite:///keystead.db"


def test_init_template_with_its_dotenv_loads(tmp_path):
    (tmp_path / ".env").write_text(f"KEYSTEAD_MASTER_KEY={MASTER}\nKEYSTEAD_ADMIN_TOKEN=t0k\n")
    path = write(tmp_path / "keystead.yaml", CONFIG_TEMPLATE)
    config = load_config(path, environ={}).config
    assert config.vault.master_key.get_secret_value() == MASTER


def test_init_template_without_the_master_key_says_which_variable(tmp_path):
    path = write(tmp_path / "keystead.yaml", CONFIG_TEMPLATE)
    with pytest.raises(ConfigError, match=r"vault\.master_key: .*KEYSTEAD_MASTER_KEY is not set"):
        load_config(path, environ={"KEYSTEAD_ADMIN_TOKEN": "t"})


# --- routes: who is cached ----------------------------------------------------------------------


def _cached_route(**cache: Any) -> dict[str, Any]:
    return {"providers": {"mock": {"type": "mock", "models": ["gpt-4o-mini"]}},
            "routes": {"faq": {"deployments": [{"provider": "mock", "model": "gpt-4o-mini"}],
                               "cache": {"ttl": "5m", **cache}}}}


def test_a_route_cache_is_for_every_key_unless_opt_in():
    cache = parse(_cached_route()).routes["faq"].cache
    assert cache is not None and (cache.ttl, cache.scope, cache.opt_in) == ("5m", "team", False)
    opted = parse(_cached_route(opt_in=True)).routes["faq"].cache
    assert opted is not None and opted.opt_in is True
    with pytest.raises(ConfigError, match=r"routes\.faq\.cache\.opt_in:"):
        parse(_cached_route(opt_in="sometimes"))
