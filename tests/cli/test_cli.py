"""The `keystead` command, in-process with click's CliRunner (fast: no interpreter start-up).

Each test gets its own directory, config and SQLite file (see conftest.py).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cli.helpers import CONFIG, Project, closed_port, invoke
from keystead import __version__
from keystead.cli.main import cli
from keystead.config.load import load_config
from keystead.keys.format import KEY_PATTERN, parse_key
from keystead.runtime import Runtime
from keystead.state.records import UsageRecord
from keystead.state.sql_store import SQLStore
from keystead.vault.envelope import MasterKey

LIST_COLUMNS = ["id", "name", "status", "env", "team", "models", "max_tokens", "cache",
                "expires_at", "last_used_at"]


# --- init ---------------------------------------------------------------------------------------


def test_init_writes_config_env_and_gitignore(tmp_path: Path) -> None:
    target = tmp_path / "site"
    result = invoke("init", str(target))
    assert result.exit_code == 0, result.output
    assert "Next:" in result.stdout

    env_file = target / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                  if line and not line.startswith("#"))
    assert set(values) == {"KEYSTEAD_MASTER_KEY", "KEYSTEAD_ADMIN_TOKEN"}
    MasterKey.from_text(values["KEYSTEAD_MASTER_KEY"])  # a usable key
    assert values["KEYSTEAD_ADMIN_TOKEN"].startswith("ksa_")
    assert len(values["KEYSTEAD_ADMIN_TOKEN"]) > 40

    gitignore = (target / ".gitignore").read_text().splitlines()
    assert ".env" in gitignore
    assert "keystead.db" in gitignore

    # The config references the secrets; loading it (with the .env beside it) just works.
    raw = yaml.safe_load((target / "keystead.yaml").read_text())
    assert raw["vault"]["master_key"] == "${KEYSTEAD_MASTER_KEY}"
    loaded = load_config(target / "keystead.yaml", environ={})
    assert loaded.config.vault.master_key is not None
    assert loaded.config.vault.master_key.get_secret_value() == values["KEYSTEAD_MASTER_KEY"]
    assert "mock" in loaded.config.providers


def test_init_twice_keeps_env_and_config(tmp_path: Path) -> None:
    assert invoke("init", str(tmp_path)).exit_code == 0
    env_before = (tmp_path / ".env").read_text()
    config = tmp_path / "keystead.yaml"
    config.write_text(config.read_text() + "# my edit\n")

    again = invoke("init", str(tmp_path))
    assert again.exit_code == 0
    assert (tmp_path / ".env").read_text() == env_before
    assert config.read_text().endswith("# my edit\n")
    assert "never replaced" in again.stdout
    assert (tmp_path / ".gitignore").read_text().splitlines().count(".env") == 1

    forced = invoke("init", str(tmp_path), "--force")
    assert forced.exit_code == 0
    assert "# my edit" not in config.read_text()
    assert (tmp_path / ".env").read_text() == env_before  # --force never touches .env


@pytest.mark.parametrize("existing", ["node_modules/\n*.pyc\n", "node_modules/\n*.pyc"])
def test_init_appends_to_an_existing_gitignore(tmp_path: Path, existing: str) -> None:
    (tmp_path / ".gitignore").write_text(existing)
    assert invoke("init", str(tmp_path)).exit_code == 0
    text = (tmp_path / ".gitignore").read_text()
    assert text.startswith("node_modules/\n*.pyc\n")
    lines = text.splitlines()
    assert {".env", "keystead.db", "keystead.db-*"} <= set(lines)


def test_init_keeps_a_gitignore_that_covers_everything(tmp_path: Path) -> None:
    original = "build/\n.env\nkeystead.db\nkeystead.db-*\n"
    (tmp_path / ".gitignore").write_text(original)
    result = invoke("init", str(tmp_path))
    assert result.exit_code == 0
    assert (tmp_path / ".gitignore").read_text() == original
    assert "covers .env" in result.stdout


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert __version__ in result.stdout


# --- keys ---------------------------------------------------------------------------------------


def test_keys_create_prints_the_key_once(project: Project) -> None:
    project.create_team("payments")
    result = project.ok("keys", "create", "dev-myapp-chat", "--team", "payments",
                        "--owner", "ana@example.com", "--description", "chat bot")
    shown = KEY_PATTERN.findall(result.stdout)
    assert len(shown) == 1
    parsed = parse_key(shown[0])
    assert parsed is not None
    assert "only time the key is shown" in result.stderr
    assert KEY_PATTERN.search(result.stderr) is None
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    assert lines["name"] == "dev-myapp-chat"
    assert lines["env"] == "dev"
    assert lines["team"] == "payments"
    assert lines["id"] == parsed.key_id
    assert lines["status"] == "active"
    # Only its hash is stored.
    (stored,) = project.sql("SELECT key_hash FROM keys WHERE id = ?", parsed.key_id)
    assert stored[0] != shown[0] and shown[0].encode() not in project.stored_bytes()


def test_keys_create_json(project: Project) -> None:
    project.create_team("ops")
    created = project.create_key("prod-webhook-bot-01", "--team", "ops")
    assert parse_key(created["key"]) is not None
    assert created["id"] == parse_key(created["key"]).key_id  # type: ignore[union-attr]
    assert (created["name"], created["env"], created["team"], created["status"]) == (
        "prod-webhook-bot-01", "prod", "ops", "active")
    assert created["models"] is None and created["expires_at"] is None


@pytest.mark.parametrize("name", ["MyKey", "dev_app_chat", "dev-app", "qa-app-chat"])
def test_keys_create_bad_name_shows_the_rule(project: Project, name: str) -> None:
    result = project.run("keys", "create", name)
    assert result.exit_code == 2  # bad input
    assert result.stderr.startswith("error: ")
    assert name in result.stderr
    if name == "qa-app-chat":
        assert "dev, staging, prod" in result.stderr
    else:
        assert "<env>-<service>-<purpose>" in result.stderr
        assert "prod-webhook-bot-01" in result.stderr
    assert project.sql("SELECT count(*) FROM keys") == [(0,)]


def test_keys_create_duplicate_name(project: Project) -> None:
    project.create_key("dev-app-chat")
    result = project.run("keys", "create", "dev-app-chat")
    assert result.exit_code == 2
    assert "exists already" in result.stderr


def test_keys_create_scope_and_expiry(project: Project) -> None:
    before = time.time()
    created = project.create_key("staging-app-chat", "--expires", "30d", "--models",
                                 "gpt-4o-mini, gpt-4o*", "--max-tokens", "100",
                                 "--endpoints", "chat.completions,models")
    assert created["models"] == ["gpt-4o-mini", "gpt-4o*"]
    assert created["endpoints"] == ["chat.completions", "models"]
    assert created["max_tokens"] == 100
    expires = datetime.fromisoformat(created["expires_at"]).timestamp()
    assert before + 30 * 86400 - 5 <= expires <= time.time() + 30 * 86400 + 5

    bad = project.run("keys", "create", "dev-app-other", "--expires", "soon")
    assert bad.exit_code == 2
    assert "--expires" in bad.stderr and "30d" in bad.stderr
    bad = project.run("keys", "create", "dev-app-other", "--endpoints", "images")
    assert bad.exit_code == 2 and "images" in bad.stderr


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_keys_list_never_prints_key_text_or_hash(project: Project, fmt: str) -> None:
    project.create_team("a")
    keys = [project.create_key("dev-app-one", "--team", "a"),
            project.create_key("prod-app-two", "--models", "gpt-4o-mini,gpt-4o")]
    hashes = [h for (h,) in project.sql("SELECT key_hash FROM keys")]
    assert len(hashes) == 2
    result = project.ok("keys", "list", "--format", fmt)
    out = result.output
    for secret in [k["key"] for k in keys] + hashes:
        assert secret not in out
    assert "dev-app-one" in out and "prod-app-two" in out
    if fmt == "json":
        rows = json.loads(result.stdout)
        assert [list(r) for r in rows] == [LIST_COLUMNS, LIST_COLUMNS]
        assert rows[1]["models"] == ["gpt-4o-mini", "gpt-4o"]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert list(rows[0]) == LIST_COLUMNS
        assert {r["name"] for r in rows} == {"dev-app-one", "prod-app-two"}
    else:
        header = result.stdout.splitlines()[0].split()
        assert header == [c.upper() for c in LIST_COLUMNS]
        assert "gpt-4o-mini,gpt-4o" in result.stdout


def test_keys_show_by_id_and_by_name(project: Project) -> None:
    project.create_team("t")
    created = project.create_key("dev-app-show", "--team", "t")
    by_id = json.loads(project.ok("keys", "show", created["id"], "--json").stdout)
    by_name = json.loads(project.ok("keys", "show", "dev-app-show", "--json").stdout)
    assert by_id == by_name
    assert "key" not in by_id and "key_hash" not in by_id
    assert by_id["id"] == created["id"]
    table = project.ok("keys", "show", "dev-app-show").stdout
    assert created["key"] not in table
    lines = dict(line.split(None, 1) for line in table.splitlines())
    assert lines["id"] == created["id"] and lines["team"] == "t" and lines["models"] == "-"
    missing = project.run("keys", "show", "dev-app-none")
    assert missing.exit_code == 1
    assert "No key with id or name 'dev-app-none'" in missing.stderr


def test_keys_revoke(project: Project) -> None:
    created = project.create_key("dev-app-revoke")
    result = project.ok("keys", "revoke", "dev-app-revoke", "--reason", "leaked in a log")
    assert result.stdout.startswith(f"revoked {created['id']} (dev-app-revoke) at ")
    shown = json.loads(project.ok("keys", "show", created["id"], "--json").stdout)
    assert shown["status"] == "revoked"
    assert shown["revoked_reason"] == "leaked in a log"
    assert shown["revoked_at"] is not None
    # Revoking again changes nothing.
    again = project.ok("keys", "revoke", created["id"])
    assert shown["revoked_at"] in again.stdout
    assert project.run("keys", "revoke", "dev-app-none").exit_code == 1

    async def identify() -> None:
        runtime = await Runtime.open(load_config(project.config, environ={
            "KEYSTEAD_MASTER_KEY": project.master_key}), serving=False)
        try:
            with pytest.raises(Exception, match="revoked"):
                runtime.keys.identify(b"Bearer " + created["key"].encode())
        finally:
            await runtime.close()

    asyncio.run(identify())


# --- providers ----------------------------------------------------------------------------------


def _providers(project: Project, **kwargs: Any) -> dict[str, dict[str, Any]]:
    rows = json.loads(project.ok("providers", "list", "--format", "json", **kwargs).stdout)
    return {row["name"]: row for row in rows}


def test_providers_add_with_stdin_keeps_the_key_in_the_vault(project: Project) -> None:
    secret = "sk-cli-stdin-" + "x" * 24
    result = project.ok("providers", "add", "local", "--type", "openai-compatible",
                        "--base-url", "http://127.0.0.1:1/v1", "--models", "llama*, qwen3",
                        "--api-key-stdin", input=secret + "\n")
    assert result.stdout.splitlines() == ["added provider local (openai-compatible), key: vault",
                                          "serves: llama*, qwen3"]
    listed = _providers(project)
    assert listed["local"]["api_key"] == "vault"
    assert listed["local"]["status"] == "ok"
    assert listed["local"]["source"] == "store"
    assert listed["local"]["models"] == ["llama*", "qwen3"]
    assert listed["mock"]["source"] == "config"
    table = project.ok("providers", "list").output
    assert secret not in table and secret not in result.output
    assert secret.encode() not in project.stored_bytes()
    assert project.sql("SELECT count(*) FROM vault_secrets WHERE id = 'provider:local'") == [(1,)]
    empty = project.run("providers", "add", "other", "--type", "openai-compatible",
                        "--base-url", "http://127.0.0.1:1/v1", "--api-key-stdin", input="\n")
    assert empty.exit_code == 2 and "no key on stdin" in empty.stderr


def test_providers_add_with_env_reference(project: Project) -> None:
    result = project.ok("providers", "add", "envkey", "--type", "openai", "--base-url",
                        "https://api.openai.com/v1", "--api-key-env", "CLI_TEST_PROVIDER_KEY",
                        env={"CLI_TEST_PROVIDER_KEY": "sk-from-env"})
    assert "key: env:CLI_TEST_PROVIDER_KEY" in result.stdout
    assert _providers(project, env={"CLI_TEST_PROVIDER_KEY": "sk-from-env"})["envkey"][
        "status"] == "ok"
    # Without the variable the provider is listed as unusable, with the reason.
    unusable = _providers(project)["envkey"]
    assert unusable["status"] == "unusable"
    assert "CLI_TEST_PROVIDER_KEY is not set" in unusable["error"]
    assert b"sk-from-env" not in project.stored_bytes()

    warned = project.run("providers", "add", "envkey2", "--type", "openai-compatible",
                         "--base-url", "http://127.0.0.1:1/v1", "--api-key-env", "NOT_SET_X")
    assert warned.exit_code == 0
    assert "warning:" in warned.stderr and "NOT_SET_X is not set" in warned.stderr
    both = project.run("providers", "add", "both", "--type", "openai-compatible", "--base-url",
                       "http://127.0.0.1:1/v1", "--api-key-env", "X", "--api-key-stdin",
                       input="sk-x\n")
    assert both.exit_code == 2 and "one way" in both.stderr


def test_providers_list_table(project: Project) -> None:
    lines = project.ok("providers", "list").stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "BASE_URL", "SOURCE", "API_KEY", "KEYS",
                                "MODELS", "STATUS", "ERROR"]
    assert lines[1].split()[:2] == ["mock", "mock"]
    assert "gpt-4o-mini,gpt-4o,text-embedding-3-small" in lines[1]


def test_providers_test_mock_ok(project: Project) -> None:
    result = project.ok("providers", "test", "mock")
    assert result.stdout.startswith("ok: mock status=200 latency_ms=")


def test_providers_test_unreachable_fails(project: Project) -> None:
    project.ok("providers", "add", "down", "--type", "openai-compatible", "--base-url",
               f"http://127.0.0.1:{closed_port()}/v1", "--models", "m1")
    result = project.run("providers", "test", "down")
    assert result.exit_code == 1
    assert result.stdout.startswith("FAILED: down status=None")
    missing = project.run("providers", "test", "nope")
    assert missing.exit_code == 1 and "No provider named 'nope'" in missing.stderr


def test_providers_remove(project: Project) -> None:
    project.ok("providers", "add", "gone", "--type", "openai-compatible", "--base-url",
               "http://127.0.0.1:1/v1", "--api-key-stdin", input="sk-gone-secret\n")
    assert "gone" in _providers(project)
    assert project.ok("providers", "remove", "gone").stdout.strip() == "removed provider gone"
    assert "gone" not in _providers(project)
    assert project.sql("SELECT count(*) FROM vault_secrets WHERE id = 'provider:gone'") == [(0,)]
    again = project.run("providers", "remove", "gone")
    assert again.exit_code == 1 and "No provider named 'gone'" in again.stderr
    config_defined = project.run("providers", "remove", "mock")
    assert config_defined.exit_code == 2 and "defined in the config file" in config_defined.stderr


# --- usage --------------------------------------------------------------------------------------


def _insert_usage(project: Project) -> None:
    now = time.time()

    def row(i: int, model: str, prompt: int, completion: int, cost: str, *, age: float = 3600,
            status: int = 200) -> UsageRecord:
        return UsageRecord(request_id=f"req-{i}", ts=now - age, endpoint="chat.completions",
                           status=status, key_id="abcdefgh", key_name="dev-app-chat",
                           team="t", env="dev", model_requested=model, model_served=model,
                           provider="mock", prompt_tokens=prompt, completion_tokens=completion,
                           cost_usd=Decimal(cost), latency_ms=10.0 * (i + 1))

    async def insert() -> None:
        store = SQLStore(f"sqlite:///{project.db}")
        await store.open()
        try:
            await store.insert_usage([
                row(0, "gpt-4o-mini", 10, 5, "0.001"),
                row(1, "gpt-4o-mini", 10, 5, "0.001"),
                row(2, "gpt-4o-mini", 10, 5, "0.001", status=500),
                row(3, "gpt-4o", 20, 10, "0.01"),
                row(4, "gpt-4o", 1000, 1000, "5", age=10 * 86400),  # outside 7d
            ])
        finally:
            await store.close()

    asyncio.run(insert())


def test_usage_by_model_json_csv_table(project: Project) -> None:
    _insert_usage(project)
    rows = json.loads(project.ok("usage", "--by", "model", "--since", "7d",
                                 "--format", "json").stdout)
    assert rows == [
        {"model": "gpt-4o", "requests": 1, "errors": 0, "prompt_tokens": 20,
         "completion_tokens": 10, "cached_tokens": 0, "cost_usd": "0.010000000",
         "avg_latency_ms": 40.0},
        {"model": "gpt-4o-mini", "requests": 3, "errors": 1, "prompt_tokens": 30,
         "completion_tokens": 15, "cached_tokens": 0, "cost_usd": "0.003000000",
         "avg_latency_ms": 20.0},
    ]
    csv_rows = list(csv.DictReader(io.StringIO(project.ok(
        "usage", "--by", "model", "--since", "7d", "--format", "csv").stdout)))
    assert [(r["model"], r["requests"], r["cost_usd"]) for r in csv_rows] == [
        ("gpt-4o", "1", "0.010000000"), ("gpt-4o-mini", "3", "0.003000000")]
    table = project.ok("usage", "--by", "model", "--since", "7d").stdout.splitlines()
    assert table[0].split() == ["MODEL", "REQUESTS", "ERRORS", "PROMPT_TOKENS",
                                "COMPLETION_TOKENS", "CACHED_TOKENS", "COST_USD",
                                "AVG_LATENCY_MS"]
    assert table[2].split()[:3] == ["gpt-4o-mini", "3", "1"]
    # A wider window includes the old row.
    wide = json.loads(project.ok("usage", "--by", "model", "--since", "30d",
                                 "--format", "json").stdout)
    assert wide[0]["model"] == "gpt-4o" and wide[0]["requests"] == 2
    by_team = json.loads(project.ok("usage", "--by", "team", "--format", "json").stdout)
    assert by_team == [{**by_team[0], "team": "t", "requests": 4}]
    bad = project.run("usage", "--since", "forever")
    assert bad.exit_code == 2 and "--since" in bad.stderr


# --- vault --------------------------------------------------------------------------------------


def test_vault_rotate_master(project: Project) -> None:
    secret = "sk-rotate-me-" + "y" * 20
    project.ok("providers", "add", "vaulted", "--type", "openai-compatible", "--base-url",
               "http://127.0.0.1:1/v1", "--models", "v1", "--api-key-stdin", input=secret + "\n")
    key = project.create_key("dev-app-rotate")["key"]
    old = project.master_key

    result = project.ok("vault", "rotate-master")
    assert "re-sealed 2 secrets" in result.stderr  # the key pepper and the provider key
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("KEYSTEAD_MASTER_KEY=")]
    new = line.split("=", 1)[1]
    assert new != old
    MasterKey.from_text(new)
    assert old not in result.output

    # The new key opens everything: the provider key is readable, issued keys still work.
    assert _providers(project, master_key=new)["vaulted"]["status"] == "ok"

    async def check() -> None:
        runtime = await Runtime.open(load_config(project.config, environ={
            "KEYSTEAD_MASTER_KEY": new}), serving=False)
        try:
            assert await runtime.vault.get("provider:vaulted") == secret.encode()
            assert runtime.keys.identify(b"Bearer " + key.encode()).name == "dev-app-rotate"
        finally:
            await runtime.close()

    asyncio.run(check())

    # The old key fails, saying which key to use: a configuration error (exit 2).
    stale = project.run("keys", "list", master_key=old)
    assert stale.exit_code == 2
    assert stale.stderr.startswith("error: ")
    assert "sealed by master key" in stale.stderr
    assert "use the matching KEYSTEAD_MASTER_KEY" in stale.stderr
    assert "Traceback" not in stale.output


def test_vault_rotate_master_from_stdin_and_malformed(project: Project) -> None:
    project.create_key("dev-app-x")
    chosen = MasterKey.generate_text()
    result = project.ok("vault", "rotate-master", "--new-key-stdin", input=chosen + "\n")
    assert "KEYSTEAD_MASTER_KEY=" not in result.stdout  # the operator chose it: not echoed
    project.ok("keys", "list", master_key=chosen)
    bad = project.run("vault", "rotate-master", "--new-key-stdin", input="too-short\n",
                      master_key=chosen)
    assert bad.exit_code == 2  # bad input
    assert "32 random bytes" in bad.stderr
    project.ok("keys", "list", master_key=chosen)  # nothing changed


def test_malformed_master_key_is_explained(project: Project) -> None:
    result = project.run("keys", "list", master_key="not-a-key")
    assert result.exit_code == 2  # a configuration error, as cli.md says
    assert "master key must be 32 random bytes" in result.stderr


# --- configuration errors -----------------------------------------------------------------------


@pytest.mark.parametrize(("command", "config", "expected"), [
    (["keys", "list"], CONFIG + "servr:\n  port: 1\n", ["servr", "unknown setting"]),
    (["serve"], CONFIG + "  x:\n    type: nope\n    base_url: http://localhost:1/v1\n",
     ["providers.x.type"]),
    (["keys", "list"], CONFIG.replace("url: sqlite:///keystead.db", "url: mysql://db/x"),
     ["database.url", "sqlite:///"]),
    (["serve"], CONFIG + "server:\n  port: 99999\n", ["server.port"]),
    (["keys", "list"], CONFIG + "  openai:\n    type: openai\n    base_url: https://x/v1\n"
                                "    api_key: sk-raw-secret-in-file\n",
     ["providers.openai.api_key", "raw secret"]),
    (["keys", "list"], "providers: [oops\n", ["not valid YAML"]),
    (["keys", "list"], "- a\n- b\n", ["top level must be a mapping"]),
])
def test_config_errors_exit_2_naming_the_field(project: Project, command: list[str],
                                               config: str, expected: list[str]) -> None:
    project.config.write_text(config)
    result = project.run(*command)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    for text in expected:
        assert text in result.stderr
    assert "sk-raw-secret-in-file" not in result.output
    assert "Traceback" not in result.output


def test_missing_config_file(tmp_path: Path) -> None:
    result = invoke("--config", str(tmp_path / "nope.yaml"), "keys", "list")
    assert result.exit_code == 2
    assert "nope.yaml does not exist" in result.stderr
    result = invoke("keys", "list", env={"KEYSTEAD_CONFIG": str(tmp_path / "gone.yaml")})
    assert result.exit_code == 2
    assert "gone.yaml does not exist" in result.stderr


def test_unset_variable_in_config_names_field_and_variable(project: Project) -> None:
    project.config.write_text(CONFIG + "admin:\n  token: ${MY_ADMIN_TOKEN_UNSET}\n")
    result = project.run("keys", "list")
    assert result.exit_code == 2
    assert "admin.token" in result.stderr and "MY_ADMIN_TOKEN_UNSET is not set" in result.stderr


def test_serve_without_master_key_says_what_to_set(project: Project) -> None:
    project.config.write_text(CONFIG.replace("vault:\n  master_key: ${KEYSTEAD_MASTER_KEY}\n",
                                             ""))
    result = CliRunner().invoke(cli, ["--config", str(project.config), "serve"],
                                catch_exceptions=False)
    assert result.exit_code != 0
    assert "no master key: set KEYSTEAD_MASTER_KEY" in result.stderr
    assert "keystead init" in result.stderr


# --- --server -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["keys", "list"], ["usage"], ["providers", "list"],
                                     ["keys", "revoke", "dev-app-x"]])
def test_server_that_is_not_listening(command: list[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = invoke("--server", url, "--admin-token", "t0ken", *command)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach {url}")
    assert "Traceback" not in result.output


def test_server_without_admin_token() -> None:
    result = invoke("--server", f"http://127.0.0.1:{closed_port()}", "keys", "list")
    assert result.exit_code == 2
    assert "needs the admin token" in result.stderr
    assert "KEYSTEAD_ADMIN_TOKEN" in result.stderr


def test_providers_add_anthropic_and_gemini_default_their_base_urls(project: Project) -> None:
    env = {"CLI_ANTHROPIC_KEY": "sk-ant-test", "CLI_GEMINI_KEY": "gm-test"}
    project.ok("providers", "add", "claude", "--type", "anthropic", "--models",
               "claude-sonnet-4-5", "--api-key-env", "CLI_ANTHROPIC_KEY", env=env)
    project.ok("providers", "add", "gem", "--type", "gemini", "--models", "gemini-2.5-flash",
               "--api-key-env", "CLI_GEMINI_KEY", env=env)
    listed = _providers(project, env=env)
    assert listed["claude"]["base_url"] == "https://api.anthropic.com"
    assert listed["claude"]["type"] == "anthropic" and listed["claude"]["status"] == "ok"
    assert listed["gem"]["base_url"].startswith("https://generativelanguage.googleapis.com")
    keyless = project.run("providers", "add", "nokey", "--type", "anthropic")
    assert keyless.exit_code != 0 and "needs a key" in keyless.output + keyless.stderr


def test_mock_upstream_refuses_a_bad_fault_script(project: Project) -> None:
    bad = project.run("mock-upstream", "--faults", "429,boom")
    assert bad.exit_code == 2 and "boom" in bad.stderr
