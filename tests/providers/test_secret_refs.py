"""Provider keys as references to external secret stores (issue 7, item 6).

file: runs against real files; aws-sm: against moto's server mode (a real Secrets Manager HTTP API
in a subprocess, driven through boto3); hcvault: against a small aiohttp app speaking Vault's KV v2
wire format, because no HashiCorp Vault server can be installed from the registries here (it is
neither on PyPI nor in Debian under a free licence)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from keystead.config.load import ConfigError, parse_config
from keystead.control.providers import ProviderService
from keystead.errors import InvalidField
from keystead.mocks.openai_upstream import MockSettings, serve_mock
from keystead.providers.registry import KeySource, ProviderSpec, resolve_secret
from keystead.providers.secret_refs import SecretRefError, check_reference, resolve_reference
from keystead.vault.envelope import VaultError
from support import make_loaded, running_app, serving_http

SECRET = "sk-live-ThisIsTheSecretValue0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def resolve(ref: str) -> str:
    return asyncio.run(resolve_reference("openai", ref))


# --- syntax ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ref", ["env:OPENAI_KEY", "vault:provider:x", "file:/run/secrets/openai",
                                 "aws-sm:prod/openai", "aws-sm:prod/openai#api_key",
                                 "aws-sm:arn:aws:secretsmanager:eu-west-1:1:secret:x-AbC#k",
                                 "hcvault:secret/keystead/openai#api_key"])
def test_well_formed_references(ref: str) -> None:
    assert check_reference(ref) == ref


@pytest.mark.parametrize("ref", ["sk-raw-key", "file:", "aws-sm:", "hcvault:secret#f",
                                 "hcvault:secret/openai", "gcp-sm:x", "env:1BAD"])
def test_malformed_references(ref: str) -> None:
    with pytest.raises(ValueError, match="is not a key reference"):
        check_reference(ref)


def test_config_accepts_store_references_only_for_provider_keys(tmp_path: Path) -> None:
    for ref in (f"file:{tmp_path}/k", "aws-sm:prod/openai#api_key", "hcvault:secret/a/b#key"):
        config = parse_config({"providers": {"o": {"type": "openai", "base_url": "https://x/v1",
                                                   "api_key": ref}}}, {}, source="t")
        spec = ProviderSpec.from_config("o", config.providers["o"])
        assert spec.keys == (KeySource(ref=ref),)
    with pytest.raises(ConfigError, match=r"admin\.token: holds a raw secret"):
        parse_config({"admin": {"token": "file:/etc/token"}}, {}, source="t")
    with pytest.raises(ConfigError, match="hcvault:MOUNT/PATH#FIELD"):
        parse_config({"providers": {"o": {"type": "openai", "base_url": "https://x/v1",
                                          "api_key": "sk-raw"}}}, {}, source="t")
    assert parse_config({}, {}, source="t").secret_stores.refresh_s == 300
    with pytest.raises(ConfigError, match="refresh_s"):
        parse_config({"secret_stores": {"refresh_s": 1}}, {}, source="t")


# --- file: -----------------------------------------------------------------------------------

def test_file_reference_reads_and_strips(tmp_path: Path) -> None:
    path = tmp_path / "openai.key"
    path.write_text(f"  {SECRET}\n")
    assert resolve(f"file:{path}") == SECRET


def test_file_reference_errors_name_the_path_never_the_value(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "missing.key"
    with pytest.raises(SecretRefError, match=f"provider openai: .*{missing} does not exist"):
        resolve(f"file:{missing}")
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    with pytest.raises(SecretRefError, match="the secret is empty"):
        resolve(f"file:{empty}")
    with pytest.raises(SecretRefError, match="is a directory"):
        resolve(f"file:{tmp_path}")
    binary = tmp_path / "binary.key"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(SecretRefError, match="not UTF-8") as info:
        resolve(f"file:{binary}")
    assert SECRET not in str(info.value)
    locked = tmp_path / "locked.key"
    locked.write_text(SECRET)
    locked.chmod(0)
    try:
        if os.geteuid() != 0:  # root reads anything: only a non-root user sees the refusal
            with pytest.raises(SecretRefError, match="not readable") as info:
                resolve(f"file:{locked}")
            assert SECRET not in str(info.value)
    finally:
        locked.chmod(0o600)
    assert SECRET not in caplog.text


def test_unreadable_file_when_root_via_monkeypatch(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.key"
    path.write_text(SECRET)

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(SecretRefError, match=f"{path} is not readable") as info:
        resolve(f"file:{path}")
    assert SECRET not in str(info.value)
    assert isinstance(info.value, VaultError)


def test_resolve_secret_still_reads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ProviderSpec(name="o", type="openai", base_url="https://x/v1", source="store",
                        keys=(KeySource(ref="env:SECRET_REFS_TEST_KEY"),))
    monkeypatch.setenv("SECRET_REFS_TEST_KEY", SECRET)
    assert asyncio.run(resolve_secret(spec, None)) == SECRET
    monkeypatch.delenv("SECRET_REFS_TEST_KEY")
    with pytest.raises(VaultError, match="SECRET_REFS_TEST_KEY is not set"):
        asyncio.run(resolve_secret(spec, None))


# --- aws-sm: against moto's server mode ------------------------------------------------------

@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "moto.server"]
    process = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> object:
    import boto3  # type: ignore[import-untyped]

    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return boto3.session.Session().client("secretsmanager", region_name="eu-west-1",
                                          endpoint_url=moto_endpoint)


def test_aws_sm_plain_and_field(aws: object, caplog: pytest.LogCaptureFixture) -> None:
    client = aws
    client.create_secret(Name="keystead/plain", SecretString=SECRET)  # type: ignore[attr-defined]
    client.create_secret(Name="keystead/json",  # type: ignore[attr-defined]
                         SecretString=json.dumps({"api_key": SECRET, "org": "o-1"}))
    assert resolve("aws-sm:keystead/plain") == SECRET
    assert resolve("aws-sm:keystead/json#api_key") == SECRET
    with pytest.raises(SecretRefError, match=r"no field 'nope' \(fields: api_key, org\)") as info:
        resolve("aws-sm:keystead/json#nope")
    assert SECRET not in str(info.value)
    with pytest.raises(SecretRefError, match="not JSON") as info:
        resolve("aws-sm:keystead/plain#api_key")
    assert SECRET not in str(info.value)
    # A rotation in Secrets Manager is what the next resolve returns.
    client.put_secret_value(SecretId="keystead/plain",  # type: ignore[attr-defined]
                            SecretString="sk-rotated")
    assert resolve("aws-sm:keystead/plain") == "sk-rotated"
    assert SECRET not in caplog.text


def test_aws_sm_missing_secret(aws: object) -> None:
    with pytest.raises(SecretRefError, match="provider openai: aws-sm:keystead/absent: AWS "
                                             "Secrets Manager: ResourceNotFoundException"):
        resolve("aws-sm:keystead/absent")


# --- hcvault: against an aiohttp app speaking the KV v2 wire format --------------------------

TOKEN = "hvs.test-token"


@asynccontextmanager
async def fake_vault(secrets: dict[str, dict[str, str]],
                     seen: list[dict[str, str]] | None = None) -> AsyncIterator[str]:
    """Vault's KV v2 read API: GET /v1/<mount>/data/<path>, X-Vault-Token, its reply shapes."""
    seen = [] if seen is None else seen

    async def read(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if request.headers.get("X-Vault-Token") != TOKEN:
            return web.json_response({"errors": ["permission denied"]}, status=403)
        key = f"{request.match_info['mount']}/{request.match_info['path']}"
        if key not in secrets:
            return web.json_response({"errors": []}, status=404)
        return web.json_response({
            "request_id": "1", "lease_id": "", "renewable": False, "lease_duration": 0,
            "data": {"data": secrets[key],
                     "metadata": {"created_time": "2026-01-01T00:00:00Z", "custom_metadata": None,
                                  "deletion_time": "", "destroyed": False, "version": 3}},
            "wrap_info": None, "warnings": None, "auth": None})

    app = web.Application()
    app.router.add_get("/v1/{mount}/data/{path:.+}", read)
    async with serving_http(app) as base:
        yield base


def test_hcvault_kv2(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with fake_vault({"secret/keystead/openai": {"api_key": SECRET}}) as addr:
            monkeypatch.setenv("VAULT_ADDR", addr + "/")
            monkeypatch.setenv("VAULT_TOKEN", TOKEN)
            monkeypatch.setenv("VAULT_NAMESPACE", "team-a")
            ref = "hcvault:secret/keystead/openai#api_key"
            assert await resolve_reference("openai", ref) == SECRET
            with pytest.raises(SecretRefError, match="no field 'other'"):
                await resolve_reference("openai", "hcvault:secret/keystead/openai#other")
            with pytest.raises(SecretRefError, match=r"no secret at secret/keystead/gone \(404\)"):
                await resolve_reference("openai", "hcvault:secret/keystead/gone#api_key")
            monkeypatch.setenv("VAULT_TOKEN", "hvs.wrong")
            with pytest.raises(SecretRefError, match=r"refused the token \(403\)") as info:
                await resolve_reference("openai", ref)
            assert "hvs.wrong" not in str(info.value)
            monkeypatch.delenv("VAULT_TOKEN")
            with pytest.raises(SecretRefError, match="VAULT_TOKEN is not set"):
                await resolve_reference("openai", ref)

    asyncio.run(main())
    assert SECRET not in caplog.text and TOKEN not in caplog.text


def test_hcvault_sends_namespace_and_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        seen: list[dict[str, str]] = []
        async with fake_vault({"kv/app": {"k": "v"}}, seen) as addr:
            monkeypatch.setenv("VAULT_ADDR", addr)
            monkeypatch.setenv("VAULT_TOKEN", TOKEN)
            monkeypatch.setenv("VAULT_NAMESPACE", "team-a")
            assert await resolve_reference("p", "hcvault:kv/app#k") == "v"
            assert seen[-1]["X-Vault-Namespace"] == "team-a"
            assert seen[-1]["X-Vault-Token"] == TOKEN
        monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{free_port()}")
        with pytest.raises(SecretRefError, match="unreachable"):
            await resolve_reference("p", "hcvault:kv/app#k")

    asyncio.run(main())


# --- CLI/service and the refresh on a running gateway ----------------------------------------

@asynccontextmanager
async def upstream_demanding(key: str) -> AsyncIterator[str]:
    port = free_port()
    task = asyncio.create_task(serve_mock("127.0.0.1", port,
                                          MockSettings(api_key=key, models=("gpt-4o-mini",))))
    await asyncio.to_thread(wait_for_port, port)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_file_ref_refreshed_on_a_running_gateway(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    old_key, new_key = "sk-old-" + "a" * 30, "sk-new-" + "b" * 30
    key_file = tmp_path / "upstream.key"
    key_file.write_text(old_key + "\n")
    caplog.set_level(logging.INFO)

    async def main() -> None:
        async with upstream_demanding(new_key) as base_url:
            loaded = make_loaded(tmp_path, {"providers": {
                "up": {"type": "openai-compatible", "base_url": base_url,
                       "api_key": f"file:{key_file}", "models": ["gpt-4o-mini"]}}})
            async with running_app(loaded) as client:
                rt = client.runtime
                assert rt._refresher is not None  # started because it serves
                service = ProviderService(rt)
                assert (await service.test("up"))["status"] == 401  # the old key is refused
                assert await rt.refresh_secrets() is False  # unchanged: no reload
                key_file.write_text(new_key + "\n")  # rotated in the "store"
                before = rt.providers.providers["up"]
                assert await rt.refresh_secrets() is True
                assert rt.providers.providers["up"] is not before
                result = await service.test("up")
                assert result["ok"] and result["status"] == 200
                gateway_key = await client.create_key()
                reply = await client.request(
                    "POST", "/v1/chat/completions", key=gateway_key,
                    json_body={"model": "gpt-4o-mini",
                               "messages": [{"role": "user", "content": "hi"}]})
                assert reply.status == 200, reply.body
                # The store becomes unreadable: logged, and the previous key keeps working,
                # even through a reload for an unrelated reason.
                key_file.unlink()
                assert await rt.refresh_secrets() is False
                await rt.reload_providers()
                assert rt.provider_status["up"].error is None
                assert (await service.test("up"))["status"] == 200
                # A provider added at run time by reference: only the reference is stored.
                key_file.write_text(new_key)
                view = await service.add("byref", type="openai-compatible", base_url=base_url,
                                         api_key_ref=f"file:{key_file}")
                assert view["api_key"] == f"file:{key_file}" and view["error"] is None
                assert (await service.test("byref"))["status"] == 200
                with pytest.raises(InvalidField, match="is not a key reference"):
                    await service.add("bad", type="mock", base_url=None, api_key_ref="s3:x")
                with pytest.raises(InvalidField, match="outside keystead"):
                    await service.add("bad", type="mock", base_url=None,
                                      api_key_ref="vault:provider:up")
                with pytest.raises(InvalidField, match="one way"):
                    await service.add("bad", type="mock", base_url=None, api_key="x",
                                      api_key_ref=f"file:{key_file}")

    asyncio.run(main())
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("keystead.db*"))
    assert stored and f"file:{key_file}".encode() in stored
    assert new_key.encode() not in stored and old_key.encode() not in stored
    assert new_key not in caplog.text and old_key not in caplog.text
    assert "still using the previous one" in caplog.text
    assert "refreshing its key failed" in caplog.text
