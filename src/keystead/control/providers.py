"""Add, list, test and remove providers (P3), and the keys of their pools. Keys go to the vault,
or stay in the environment or an external secret store (file:, aws-sm:, hcvault:), of which only
the reference is stored."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

from keystead.config.provider_values import check_base_url, check_deployment, check_model_entry
from keystead.config.providers import DEFAULT_BASE_URLS
from keystead.control.probe import probe
from keystead.errors import InvalidField, NotFound, SecretRefNotAllowed
from keystead.providers.base import Provider
from keystead.providers.key_pool import ACTIVE, fingerprint, normalize_label
from keystead.providers.ref_policy import admin_refusal, own_secret
from keystead.providers.secret_refs import EXTERNAL_SCHEMES, check_reference
from keystead.runtime import KEY_ENABLED, PROVIDERS_VERSION, ProviderStatus, Runtime
from keystead.state.records import EventRecord, ProviderRecord
from keystead.state.store import DuplicateName

__all__ = ["ProviderService", "provider_view"]

_TYPES = ("openai", "azure", "openai-compatible", "mock", "anthropic", "gemini")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ONE_WAY = ("Give the keys one way: --api-key-env, --api-key-stdin or --api-key-ref (each may "
            "be repeated for a pool of keys).")


def provider_view(status: ProviderStatus, provider: Provider | None) -> dict[str, Any]:
    """A provider as the CLI and the admin API show it; `provider` (the one serving, if any)
    gives its keys' states."""
    spec, error = status.spec, status.error
    live = {entry["label"]: entry for entry in provider.keys.view()} if provider else {}
    keys = []
    for i, source in enumerate(spec.keys, 1):
        label = f"#{i}"
        entry = live.get(label)
        if entry is None:  # not in the pool: unreadable (or the same key as another)
            reason = status.key_errors.get(label) or error \
                or "the same key as another key of this provider; used once"
            entry = {"label": label, "fingerprint": None, "state": "unusable", "since": None,
                     "until": None, "reason": reason}
        keys.append({"label": label, "source": source.where, "fingerprint": entry["fingerprint"],
                     "state": entry["state"], "since": entry["since"], "until": entry["until"],
                     "reason": entry["reason"]})
    return {
        "name": spec.name, "type": spec.type, "base_url": spec.base_url, "source": spec.source,
        "api_key": ", ".join(source.where for source in spec.keys) or None,
        "models": list(spec.models), "deployments": spec.deployments,
        "api_version": spec.api_version if spec.type == "azure" else None,
        "status": "ok" if error is None else "unusable", "error": error, "keys": keys,
    }


class ProviderService:
    def __init__(self, runtime: Runtime, actor: str = "cli"):
        self.rt = runtime
        self.actor = actor  # who acts, for the audit entries: "cli", "admin-api"

    async def add(self, name: str, *, type: str, base_url: str | None,
                  api_key_env: str | None = None, api_key: str | None = None,
                  models: list[str] | None = None, deployments: dict[str, str] | None = None,
                  api_version: str | None = None,
                  supports_responses: bool | None = None,
                  api_key_ref: str | None = None, api_keys: list[str] | None = None,
                  api_key_refs: list[str] | None = None) -> dict[str, Any]:
        """Add a provider; `api_keys` (sealed into the vault) or `api_key_refs` give it a pool
        of keys, the other `api_key*` one key."""
        if not _NAME.fullmatch(name):
            raise InvalidField("Provider names are lowercase letters, digits, '-' or '_'.",
                               param="name")
        if type not in _TYPES:
            raise InvalidField(f"Unknown provider type {type!r}.", param="type",
                               hint=f"Choose from {', '.join(_TYPES)}.")
        base_url = base_url or DEFAULT_BASE_URLS.get(type)  # anthropic, gemini: their APIs
        if type != "mock" and not base_url:
            raise InvalidField(f"A provider of type {type} needs --base-url.", param="base_url")
        if base_url and not base_url.startswith(("http://", "https://")):
            raise InvalidField("base_url must start with http:// or https://.", param="base_url")
        if base_url:
            try:
                check_base_url(base_url)
            except ValueError as exc:
                raise InvalidField(str(exc).capitalize() + ".", param="base_url") from None
        _check_models(models or (), deployments or {})
        given = (api_key_env, api_key, api_key_ref, api_keys or None, api_key_refs or None)
        if sum(x is not None for x in given) > 1:
            raise InvalidField(_ONE_WAY, param="api_key")
        if api_key_env is not None and not _ENV_VAR.fullmatch(api_key_env):
            raise InvalidField(f"{api_key_env!r} is not an environment variable name.",
                               param="api_key_env")
        refs = [_external_ref(ref, "api_key_refs") for ref in api_key_refs or ()]
        if api_key_ref is not None:
            refs = [_external_ref(api_key_ref, "api_key_ref")]
        elif api_key_env is not None:
            refs = [f"env:{api_key_env}"]
        for ref in refs:
            self._check_ref(ref, "api_key_env" if api_key_env is not None
                            else "api_key_ref" if api_key_ref is not None else "api_key_refs")
        values = [value.strip() for value in ([api_key] if api_key else api_keys or ())]
        if any(not value for value in values):
            raise InvalidField("A key is empty.", param="api_keys")
        _no_twins(refs, "api_key_refs")
        _no_twins(values, "api_keys")
        if type in ("openai", "azure", "anthropic", "gemini") and not refs and not values:
            raise InvalidField(f"A provider of type {type} needs a key.", param="api_key",
                               hint="Pass --api-key-env VAR, --api-key-ref REF, or pipe it to "
                                    "--api-key-stdin.")
        if name in self.rt.config.providers:
            raise InvalidField(f"Provider {name!r} is defined in the config file.", param="name",
                               code="duplicate_name", hint="Change it there, or pick a new name.")
        if values:
            # The first key where a one-key provider's always was (set-key, remove find it).
            ids = [f"provider:{name}"] + [_new_vault_id(name) for _ in values[1:]]
            for secret_id, value in zip(ids, values, strict=True):
                await self.rt.vault.put(secret_id, value.encode())
            refs = [f"vault:{secret_id}" for secret_id in ids]
        record = ProviderRecord(
            name=name, type=type, base_url=base_url, api_key_ref=refs[0] if refs else None,
            models=tuple(models or ()), deployments=dict(deployments or {}),
            api_version=api_version, supports_responses=supports_responses,
            created_at=time.time(), api_key_refs=tuple(refs),
        )
        try:
            await self.rt.store.insert_provider(record)
        except DuplicateName:
            raise InvalidField(f"A provider named {name!r} exists already.", param="name",
                               code="duplicate_name",
                               hint="Remove it first with `keystead providers remove`.") from None
        await self.rt.changed(PROVIDERS_VERSION)
        return self.get(name)

    def list(self) -> list[dict[str, Any]]:
        return [provider_view(s, self.rt.providers.providers.get(s.spec.name))
                for s in self.rt.provider_status.values()]

    def get(self, name: str) -> dict[str, Any]:
        return provider_view(self._status(name), self.rt.providers.providers.get(name))

    async def set_key(self, name: str, api_key: str, label: str | None = None) -> dict[str, Any]:
        """Replace a provider's key in the vault (`label`: which key of a pool), with no failed
        request: requests in flight finish with the old key, every request after the swap (on
        every gateway within a second) uses the new one. Create the new key at the provider
        first, swap, then revoke the old one there. A replaced key starts active."""
        status = self._status(name)
        keys = status.spec.keys
        if label is None and len(keys) > 1:
            raise InvalidField(f"Provider {name!r} has {len(keys)} keys: say which one to "
                               "replace.", param="label",
                               hint=f"`keystead providers set-key {name} --key 2` replaces #2.")
        index = self._index(status, label) if label is not None else 0
        ref = keys[index].ref if keys else None
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
        return self.get(name)

    async def add_key(self, name: str, *, api_key: str | None = None,
                      api_key_ref: str | None = None) -> dict[str, Any]:
        """Add a key to the pool of a provider added at run time: sealed into the vault, or a
        reference to an external store. It serves on every gateway within a second."""
        status = self._stored(name, "add the key to its api_keys there")
        if (api_key is None) == (api_key_ref is None):
            raise InvalidField("Give the new key one way: on stdin (sealed into the vault) or "
                               "as --ref REF.", param="api_key")
        refs = [source.ref for source in status.spec.keys if source.ref is not None]
        if api_key_ref is not None:
            ref = _external_ref(api_key_ref, "api_key_ref")
            self._check_ref(ref, "api_key_ref")
            if ref in refs:
                raise InvalidField(f"Provider {name!r} has the key {ref} already.",
                                   param="api_key_ref")
        else:
            value = (api_key or "").strip()
            if not value:
                raise InvalidField("The new key is empty.", param="api_key")
            provider = self.rt.providers.providers.get(name)
            twin = provider.keys.by_fingerprint(fingerprint(value)) if provider else None
            if twin is not None:
                raise InvalidField(f"This key is {twin.label} of provider {name!r} already.",
                                   param="api_key")
            secret_id = f"provider:{name}" if not refs else _new_vault_id(name)
            await self.rt.vault.put(secret_id, value.encode())
            ref = f"vault:{secret_id}"
        await self.rt.store.set_provider_keys(name, [*refs, ref])
        await self.rt.changed(PROVIDERS_VERSION)
        return self.get(name)

    async def remove_key(self, name: str, label: str) -> dict[str, Any]:
        """Take a key out of the pool of a provider added at run time for good (the keys after
        it move up a label); a key sealed into the vault is deleted from it."""
        status = self._stored(name, "remove the key from its api_keys there")
        index = self._index(status, label)
        refs = [source.ref for source in status.spec.keys if source.ref is not None]
        if len(refs) == 1:
            raise InvalidField(f"Key #1 is the only key of provider {name!r}.", param="label",
                               hint="Replace it with `keystead providers set-key`, or remove "
                                    "the provider.")
        provider = self.rt.providers.providers.get(name)
        gone = provider.keys.get(label) if provider else None
        ref = refs.pop(index)
        await self.rt.store.set_provider_keys(name, refs)
        if ref.startswith(f"vault:provider:{name}"):
            await self.rt.vault.delete(ref[len("vault:"):])
        if gone is not None:
            await self.rt.store.delete_provider_key_state(name, gone.fingerprint)
        await self.rt.changed(PROVIDERS_VERSION)
        return self.get(name)

    async def enable_key(self, name: str, label: str) -> dict[str, Any]:
        """Put a key that was taken out (a 401/403) back into rotation, on every gateway within
        a second. If the provider still refuses it, it is taken out again at once (and the
        request that found out is sent with another key)."""
        status = self._status(name)
        self._index(status, label)
        provider = self.rt.providers.providers.get(name)
        key = provider.keys.get(label) if provider else None
        if provider is None or key is None:
            raise InvalidField(f"Key {normalize_label(label)} of provider {name!r} cannot be "
                               "read now, so it cannot serve.", param="label",
                               hint=f"`keystead providers show {name}` says why.")
        previous = key.state
        self.rt.forget_pending_key(name, key.fingerprint)
        recorded = await self.rt.store.delete_provider_key_state(name, key.fingerprint)
        if previous != ACTIVE:
            provider.keys.restore(key, ACTIVE, reason=f"re-enabled ({self.actor})")
        if previous != ACTIVE or recorded:
            await self.rt.store.insert_event(EventRecord(
                kind=KEY_ENABLED, ts=time.time(), actor=self.actor, detail={
                    "provider": name, "label": key.label, "fingerprint": key.fingerprint,
                    "reason": "enable-key", "previous": previous}))
        await self.rt.changed(PROVIDERS_VERSION)
        return self.get(name)

    async def remove(self, name: str) -> None:
        if name in self.rt.config.providers:
            raise InvalidField(f"Provider {name!r} is defined in the config file; remove it "
                               "there.", param="name")
        status = self.rt.provider_status.get(name)
        if not await self.rt.store.delete_provider(name):
            raise NotFound(f"No provider named {name!r}.", param="name")
        sealed = {f"provider:{name}"}
        if status is not None:
            sealed |= {source.ref[len("vault:"):] for source in status.spec.keys
                       if source.ref and source.ref.startswith(f"vault:provider:{name}")}
        for secret_id in sorted(sealed):
            await self.rt.vault.delete(secret_id)
        await self.rt.changed(PROVIDERS_VERSION)

    async def test(self, name: str) -> dict[str, Any]:
        """Reach the provider with each of its real keys: list models, or a 1-token chat if it
        has none. Changes no key's state: it reports."""
        status = self.rt.provider_status.get(name)
        if status is None:
            raise NotFound(f"No provider named {name!r}.", param="name",
                           hint="`keystead providers list` shows them.")
        if status.error is not None:
            return {"name": name, "ok": False, "status": None, "latency_ms": None,
                    "detail": status.error, "keys": []}
        provider = self.rt.providers.providers[name]
        pool = provider.keys.keys
        if not pool and not status.key_errors:
            return {"name": name, **await probe(provider, None), "keys": []}
        results = [{"label": key.label, "fingerprint": key.fingerprint, "state": key.state,
                    **await probe(provider, key)} for key in pool]
        results += [{"label": label, "fingerprint": None, "state": "unusable", "ok": False,
                     "status": None, "latency_ms": None, "detail": error}
                    for label, error in status.key_errors.items()]
        results.sort(key=lambda result: int(result["label"][1:]))
        if len(results) == 1:
            (only,) = results
            return {"name": name, "ok": only["ok"], "status": only["status"],
                    "latency_ms": only["latency_ms"], "detail": only["detail"], "keys": results}
        failed = [result for result in results if not result["ok"]]
        first = failed[0] if failed else results[0]
        detail = f"{len(results) - len(failed)} of {len(results)} keys ok"
        if failed:
            detail += "; " + ", ".join(f"{r['label']}: {r['detail']}" for r in failed)
        latencies = [r["latency_ms"] for r in results if r["latency_ms"] is not None]
        return {"name": name, "ok": not failed, "status": first["status"],
                "latency_ms": max(latencies) if latencies else None, "detail": detail,
                "keys": results}

    def _check_ref(self, ref: str, param: str) -> None:
        """References only where they belong (providers/ref_policy.py): never keystead's own
        secrets; from the admin API, only what admin.secret_refs allows."""
        own = own_secret(ref, self._own_files())
        if own is not None:
            raise SecretRefNotAllowed(
                f"{ref} cannot be a provider key: {own}.", param=param,
                code="keystead_secret_ref",
                hint="Give the provider's own key: its value (sealed into the vault), or a "
                     "reference to where that key is kept.")
        if self.actor != "admin-api":
            return  # the CLI beside the config is the operator's own
        setting = admin_refusal(ref, self.rt.config.admin.secret_refs)
        if setting is not None:
            raise SecretRefNotAllowed(
                f"The admin API may not give a provider the key reference {ref}.", param=param,
                hint="Send the key's value instead (api_key: sealed into the vault), or allow "
                     f"such references in the gateway's config under {setting}.")

    def _own_files(self) -> tuple[Path, ...]:
        """This gateway's files that hold secrets: the config, its .env, the master key file."""
        loaded = self.rt.loaded
        files = (loaded.path, loaded.path.parent / ".env") if loaded.path is not None else ()
        key_file = self.rt.config.vault.master_key_file
        return (*files, loaded.resolve_path(key_file)) if key_file else files

    def _status(self, name: str) -> ProviderStatus:
        status = self.rt.provider_status.get(name)
        if status is None:
            raise NotFound(f"No provider named {name!r}.", param="name",
                           hint="`keystead providers list` shows them.")
        return status

    def _stored(self, name: str, there: str) -> ProviderStatus:
        status = self._status(name)
        if status.spec.source != "store":
            raise InvalidField(f"Provider {name!r} is defined in the config file; {there}.",
                               param="name")
        return status

    @staticmethod
    def _index(status: ProviderStatus, label: str) -> int:
        """The position of key `label` (`2` or `#2`) in the provider's keys."""
        wanted = normalize_label(label)
        count = len(status.spec.keys)
        for i in range(count):
            if wanted == f"#{i + 1}":
                return i
        labels = ", ".join(f"#{i + 1}" for i in range(count)) or "none"
        raise NotFound(f"Provider {status.spec.name!r} has no key {wanted}.", param="label",
                       hint=f"Its keys: {labels}.")


def _external_ref(ref: str, param: str) -> str:
    try:
        check_reference(ref)
    except ValueError as exc:
        raise InvalidField(str(exc), param=param) from None
    if not ref.startswith(EXTERNAL_SCHEMES):
        raise InvalidField("--api-key-ref names a key kept outside keystead (env:, file:, "
                           "aws-sm:, hcvault:); use --api-key-stdin to seal one into the vault.",
                           param=param)
    return ref


def _check_models(models: Any, deployments: dict[str, str]) -> None:
    """Model names and Azure deployments where they enter: a deployment becomes a URL path."""
    for entry in [*models, *deployments]:
        try:
            check_model_entry(entry)
        except ValueError as exc:
            param = "models" if entry in models else "deployments"
            raise InvalidField(str(exc).capitalize() + ".", param=param) from None
    for deployment in deployments.values():
        try:
            check_deployment(deployment)
        except ValueError as exc:
            raise InvalidField(str(exc).capitalize() + ".", param="deployments") from None


def _no_twins(values: list[str], param: str) -> None:
    for i, value in enumerate(values):
        if value in values[:i]:
            raise InvalidField(f"Key #{i + 1} is the same as key #{values.index(value) + 1}.",
                               param=param)


def _new_vault_id(name: str) -> str:
    return f"provider:{name}:{secrets.token_hex(4)}"
