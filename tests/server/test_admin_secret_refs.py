"""References only where they belong (issue 13): the admin API could add a provider whose key was
`env:KEYSTEAD_MASTER_KEY` and whose base URL was the caller's, and `providers test` then sent the
master key there; any environment variable or one-line file likewise.

Now keystead's own secrets are never a provider key (whatever the face, whatever is allowed),
and the admin API may create only the references `admin.secret_refs` allows: by default none.
A real HTTP server stands for the caller's URL and records every credential it is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from keystead.control.providers import ProviderService
from keystead.errors import SecretRefNotAllowed
from support import ADMIN_TOKEN, AppClient, make_loaded, running_app, serving_http

OTHER = "sk-other-service-key-0123456789abcdef"  # some other variable of the gateway's host
Body = Callable[[AppClient, str, list[str]], Awaitable[None]]


def run(tmp_path: Path, body: Body, secret_refs: dict[str, Any] | None = None) -> list[str]:
    """`body(client, caller_url, seen)` against a gateway; returns every credential the
    caller's server was sent."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers.get("authorization", "")
                    + request.headers.get("api-key", "") + request.headers.get("x-api-key", ""))
        return web.json_response({"object": "list", "data": []})

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        async with serving_http(app) as caller:
            raw: dict[str, Any] = {}
            if secret_refs is not None:
                raw["admin"] = {"token": "${KEYSTEAD_ADMIN_TOKEN}", "secret_refs": secret_refs}
            async with running_app(make_loaded(tmp_path, raw)) as client:
                await asyncio.wait_for(body(client, f"{caller}/v1", seen), 30)

    asyncio.run(main())
    return seen


def provider(name: str, url: str, **key: Any) -> dict[str, Any]:
    return {"name": name, "type": "openai-compatible", "base_url": url, "models": ["x"], **key}


def refusal(reply: Any, code: str, *words: str) -> None:
    assert reply.status == 403, reply.body
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", code), error
    for word in words:
        assert word in error["message"], error["message"]


@pytest.fixture
def gateway_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The gateway's environment as in production: its own secrets are variables of it."""
    master = make_loaded(tmp_path).config.vault.master_key
    assert master is not None
    monkeypatch.setenv("KEYSTEAD_MASTER_KEY", master.get_secret_value())
    monkeypatch.setenv("KEYSTEAD_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("OTHER_SERVICE_KEY", OTHER)
    return master.get_secret_value()


def test_the_admin_api_cannot_send_the_master_key_anywhere(tmp_path: Path,
                                                           gateway_env: str) -> None:
    """The attack: refused when the provider is added, so `providers test` has nothing to
    send (before the fix: 201, and the test call carried the master key)."""
    async def body(client: AppClient, url: str, seen: list[str]) -> None:
        for key in ({"api_key_ref": "env:KEYSTEAD_MASTER_KEY"},
                    {"api_key_env": "KEYSTEAD_ADMIN_TOKEN"},
                    {"api_key_refs": ["env:OTHER_SERVICE_KEY", "env:keystead_master_key"]}):
            reply = await client.admin("POST", "/admin/providers", provider("evil", url, **key))
            refusal(reply, "keystead_secret_ref", "keystead's own variables")
            assert (await client.admin("POST", "/admin/providers/evil/test")).status == 404
        assert await client.runtime.store.list_providers() == []

    # Allowing every variable changes nothing for keystead's own.
    assert run(tmp_path, body, {"allow_env": ["*"]}) == []


def test_by_default_the_admin_api_names_no_variable_file_or_store(
        tmp_path: Path, gateway_env: str) -> None:
    one_line = tmp_path / "hostname"
    one_line.write_text("db-primary.internal\n")

    async def body(client: AppClient, url: str, seen: list[str]) -> None:
        for key, setting in (
                ({"api_key_env": "OTHER_SERVICE_KEY"}, "allow_env"),
                ({"api_key_ref": f"file:{one_line}"}, "allow_file_dirs"),
                ({"api_key_ref": "aws-sm:prod/llm/openai#key"}, "allow_aws_sm"),
                ({"api_key_refs": ["hcvault:secret/llm/openai#key"]}, "allow_hcvault")):
            reply = await client.admin("POST", "/admin/providers", provider("p", url, **key))
            refusal(reply, "secret_ref_not_allowed", f"admin.secret_refs.{setting}",
                    "Send the key's value instead")
        # The value itself is fine: sealed into the vault, sent to the URL the caller chose.
        added = await client.admin("POST", "/admin/providers",
                                   provider("p", url, api_key="sk-given-by-value-0123456789"))
        assert added.status == 201, added.body
        # And adding a key to it follows the same rule.
        more = await client.admin("POST", "/admin/providers/p/keys",
                                  {"api_key_ref": "env:OTHER_SERVICE_KEY"})
        refusal(more, "secret_ref_not_allowed", "admin.secret_refs.allow_env")
        tested = await client.admin("POST", "/admin/providers/p/test")
        assert tested.json()["ok"] is True

    seen = run(tmp_path, body)
    assert seen == ["Bearer sk-given-by-value-0123456789"]


def test_allowed_references_work_and_the_own_ones_stay_refused(
        tmp_path: Path, gateway_env: str) -> None:
    secrets_dir = tmp_path / "run-secrets"
    secrets_dir.mkdir()
    (secrets_dir / "openai").write_text("sk-mounted-secret-0123456789\n")
    (secrets_dir / ".env").write_text(f"KEYSTEAD_MASTER_KEY={gateway_env}\n")
    (secrets_dir / "copy-of-master").write_text(gateway_env + "\n")
    (secrets_dir / "copy-of-token").write_text(ADMIN_TOKEN + "\n")
    (secrets_dir / "several-lines").write_text("OPENAI=sk-a\nANTHROPIC=sk-b\n")
    outside = tmp_path / "outside"
    outside.write_text("sk-outside-0123456789\n")
    (secrets_dir / "link-out").symlink_to(outside)

    async def body(client: AppClient, url: str, seen: list[str]) -> None:
        async def add(name: str, ref: str) -> Any:
            return await client.admin("POST", "/admin/providers",
                                      provider(name, url, api_key_ref=ref))

        assert (await add("env-ok", "env:OTHER_SERVICE_KEY")).status == 201
        assert (await add("file-ok", f"file:{secrets_dir}/openai")).status == 201
        refusal(await add("dotenv", f"file:{secrets_dir}/.env"), "keystead_secret_ref",
                "environment file")
        refusal(await add("walk", f"file:{secrets_dir}/../outside"), "secret_ref_not_allowed",
                "allow_file_dirs")
        refusal(await add("link", f"file:{secrets_dir}/link-out"), "secret_ref_not_allowed")
        refusal(await add("env-no", "env:HOME"), "secret_ref_not_allowed", "allow_env")
        # Allowed, but what they hold is keystead's own, or not a key: never read into a pool.
        for name in ("copy-of-master", "copy-of-token", "several-lines"):
            assert (await add(name, f"file:{secrets_dir}/{name}")).status == 201
            shown = (await client.admin("GET", f"/admin/providers/{name}")).json()
            assert shown["status"] == "unusable", shown
            assert "never a provider key" in shown["error"]
            assert gateway_env not in str(shown) and ADMIN_TOKEN not in str(shown)
            tested = (await client.admin("POST", f"/admin/providers/{name}/test")).json()
            assert tested["ok"] is False
        for name in ("env-ok", "file-ok"):
            assert (await client.admin("POST", f"/admin/providers/{name}/test")).json()["ok"]

    seen = run(tmp_path, body, {"allow_env": ["OTHER_*"],
                                "allow_file_dirs": [str(secrets_dir)]})
    assert sorted(seen) == ["Bearer sk-mounted-secret-0123456789", f"Bearer {OTHER}"]


def test_the_embedded_cli_may_name_variables_but_never_keysteads_own(
        tmp_path: Path, gateway_env: str) -> None:
    async def body(client: AppClient, url: str, seen: list[str]) -> None:
        service = ProviderService(client.runtime)  # the CLI's face: actor "cli"
        view = await service.add("mine", type="openai-compatible", base_url=url,
                                 api_key_env="OTHER_SERVICE_KEY", models=["x"])
        assert view["api_key"] == "env:OTHER_SERVICE_KEY"
        for ref in ("env:KEYSTEAD_MASTER_KEY", "env:KEYSTEAD_DATABASE_URL",
                    f"file:{tmp_path}/.env"):
            with pytest.raises(SecretRefNotAllowed) as refused:
                await service.add("evil", type="openai-compatible", base_url=url,
                                  api_key_ref=ref, models=["x"])
            assert refused.value.code == "keystead_secret_ref"
            with pytest.raises(SecretRefNotAllowed):
                await service.add_key("mine", api_key_ref=ref)

    assert run(tmp_path, body) == []


def test_a_stored_reference_to_keysteads_own_secret_is_never_read(
        tmp_path: Path, gateway_env: str) -> None:
    """A provider stored before this rule (or written to the store directly) is unusable."""
    from keystead.providers.secret_refs import SecretRefError, resolve_reference

    async def main() -> None:
        with pytest.raises(SecretRefError, match="keystead's own variables"):
            await resolve_reference("old", "env:KEYSTEAD_MASTER_KEY")
        with pytest.raises(SecretRefError, match="KEYSTEAD_ADMIN_TOKEN"):
            await resolve_reference("old", "env:COPY_OF_TOKEN")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COPY_OF_TOKEN", ADMIN_TOKEN)
        asyncio.run(main())
