"""Add, list, test and remove providers (P3). Keys go to the vault, or stay in the environment or
an external secret store (file:, aws-sm:, hcvault:), of which only the reference is stored."""

from __future__ import annotations

import re
import time
from typing import Any

from keystead.errors import InvalidField, NotFound
from keystead.providers.base import Endpoint
from keystead.providers.registry import ProviderSpec
from keystead.providers.secret_refs import EXTERNAL_SCHEMES, check_reference
from keystead.runtime import PROVIDERS_VERSION, Runtime
from keystead.state.records import ProviderRecord
from keystead.state.store import DuplicateName

__all__ = ["ProviderService", "provider_view"]

_TYPES = ("openai", "azure", "openai-compatible", "mock")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def provider_view(spec: ProviderSpec, error: str | None) -> dict[str, Any]:
    key: str | None
    if spec.api_key_ref is not None:
        key = "vault" if spec.api_key_ref.startswith("vault:") else spec.api_key_ref
    else:
        key = "config" if spec.api_key is not None else None
    return {
        "name": spec.name, "type": spec.type, "base_url": spec.base_url, "source": spec.source,
        "api_key": key, "models": list(spec.models), "deployments": spec.deployments,
        "api_version": spec.api_version if spec.type == "azure" else None,
        "status": "ok" if error is None else "unusable", "error": error,
    }


class ProviderService:
    def __init__(self, runtime: Runtime):
        self.rt = runtime

    async def add(self, name: str, *, type: str, base_url: str | None,
                  api_key_env: str | None = None, api_key: str | None = None,
                  models: list[str] | None = None, deployments: dict[str, str] | None = None,
                  api_version: str | None = None,
                  supports_responses: bool | None = None,
                  api_key_ref: str | None = None) -> dict[str, Any]:
        if not _NAME.fullmatch(name):
            raise InvalidField("Provider names are lowercase letters, digits, '-' or '_'.",
                               param="name")
        if type not in _TYPES:
            raise InvalidField(f"Unknown provider type {type!r}.", param="type",
                               hint=f"Choose from {', '.join(_TYPES)}.")
        if type != "mock" and not base_url:
            raise InvalidField(f"A provider of type {type} needs --base-url.", param="base_url")
        if base_url and not base_url.startswith(("http://", "https://")):
            raise InvalidField("base_url must start with http:// or https://.", param="base_url")
        if sum(x is not None for x in (api_key_env, api_key, api_key_ref)) > 1:
            raise InvalidField("Give the key one way: --api-key-env, --api-key-stdin or "
                               "--api-key-ref.", param="api_key")
        if api_key_ref is not None:
            try:
                check_reference(api_key_ref)
            except ValueError as exc:
                raise InvalidField(str(exc), param="api_key_ref") from None
            if not api_key_ref.startswith(EXTERNAL_SCHEMES):
                raise InvalidField("--api-key-ref names a key kept outside keystead (env:, "
                                   "file:, aws-sm:, hcvault:); use --api-key-stdin to seal one "
                                   "into the vault.", param="api_key_ref")
        if api_key_env is not None and not _ENV_VAR.fullmatch(api_key_env):
            raise InvalidField(f"{api_key_env!r} is not an environment variable name.",
                               param="api_key_env")
        if type in ("openai", "azure") and api_key_env is None and not api_key \
                and api_key_ref is None:
            raise InvalidField(f"A provider of type {type} needs a key.", param="api_key",
                               hint="Pass --api-key-env VAR, --api-key-ref REF, or pipe it to "
                                    "--api-key-stdin.")
        if name in self.rt.config.providers:
            raise InvalidField(f"Provider {name!r} is defined in the config file.", param="name",
                               code="duplicate_name", hint="Change it there, or pick a new name.")
        ref: str | None = api_key_ref
        if api_key_env is not None:
            ref = f"env:{api_key_env}"
        elif api_key:
            ref = f"vault:provider:{name}"
            await self.rt.vault.put(f"provider:{name}", api_key.strip().encode())
        record = ProviderRecord(
            name=name, type=type, base_url=base_url, api_key_ref=ref,
            models=tuple(models or ()), deployments=dict(deployments or {}),
            api_version=api_version, supports_responses=supports_responses,
            created_at=time.time(),
        )
        try:
            await self.rt.store.insert_provider(record)
        except DuplicateName:
            raise InvalidField(f"A provider named {name!r} exists already.", param="name",
                               code="duplicate_name",
                               hint="Remove it first with `keystead providers remove`.") from None
        await self.rt.changed(PROVIDERS_VERSION)
        status = self.rt.provider_status[name]
        return provider_view(status.spec, status.error)

    def list(self) -> list[dict[str, Any]]:
        return [provider_view(s.spec, s.error) for s in self.rt.provider_status.values()]

    async def set_key(self, name: str, api_key: str) -> dict[str, Any]:
        """Replace a provider's key in the vault, with no failed request: requests in flight
        finish with the old key, every request after the swap (on every gateway within a
        second) uses the new one. Create the new key at the provider first, swap, then revoke
        the old one there."""
        status = self.rt.provider_status.get(name)
        if status is None:
            raise NotFound(f"No provider named {name!r}.", param="name")
        ref = status.spec.api_key_ref
        if ref is None or not ref.startswith("vault:"):
            where = ref.split(":", 1)[0] + ":" if ref else "the config file"
            raise InvalidField(
                f"Provider {name!r} does not keep its key in the vault (it comes from {where}).",
                param="name", hint="Change it where it lives; external stores are re-read every "
                                   "secret_stores.refresh_s.")
        key = api_key.strip()
        if not key:
            raise InvalidField("The new key is empty.", param="api_key")
        await self.rt.vault.put(ref[len("vault:"):], key.encode())
        await self.rt.changed(PROVIDERS_VERSION)
        status = self.rt.provider_status[name]
        return provider_view(status.spec, status.error)

    async def remove(self, name: str) -> None:
        if name in self.rt.config.providers:
            raise InvalidField(f"Provider {name!r} is defined in the config file; remove it "
                               "there.", param="name")
        if not await self.rt.store.delete_provider(name):
            raise NotFound(f"No provider named {name!r}.", param="name")
        await self.rt.vault.delete(f"provider:{name}")
        await self.rt.changed(PROVIDERS_VERSION)

    async def test(self, name: str) -> dict[str, Any]:
        """Reach the provider with its real key: list models, or a 1-token chat if it has none."""
        status = self.rt.provider_status.get(name)
        if status is None:
            raise NotFound(f"No provider named {name!r}.", param="name",
                           hint="`keystead providers list` shows them.")
        if status.error is not None:
            return {"name": name, "ok": False, "status": None, "latency_ms": None,
                    "detail": status.error}
        provider = self.rt.providers.providers[name]
        started = time.perf_counter()
        try:
            if provider.capabilities.list_models:
                response = await provider.send(Endpoint.MODELS, "", None, stream=False)
            else:
                model = next(iter(provider.listed_models), "gpt-4o-mini")
                body = (b'{"model":"' + model.encode() + b'","max_tokens":1,'
                        b'"messages":[{"role":"user","content":"ping"}]}')
                response = await provider.send(Endpoint.CHAT, model, body, stream=False)
            await response.read()
        except Exception as exc:  # the whole point is to report it
            return {"name": name, "ok": False, "status": None,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                    "detail": getattr(exc, "message", type(exc).__name__)}
        latency = round((time.perf_counter() - started) * 1000, 1)
        detail = {401: "the provider refused the key (401)", 403: "the key lacks permission (403)",
                  404: "the base_url looks wrong (404)"}.get(response.status, "")
        return {"name": name, "ok": response.status < 400, "status": response.status,
                "latency_ms": latency, "detail": detail or ("ok" if response.status < 400 else
                                                            f"HTTP {response.status}")}
