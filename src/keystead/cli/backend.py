"""Where CLI commands act: on the store directly (embedded) or on a running gateway (--server).

Both backends return the same plain dicts, so every command prints the same thing either way.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from keystead.config.load import LoadedConfig
from keystead.control.events import EventService, event_view
from keystead.control.incident import IncidentService
from keystead.control.keys import KeyService
from keystead.control.providers import ProviderService
from keystead.control.teams import TeamService, apply_limit_changes, team_view
from keystead.control.tokens import TokenService
from keystead.control.usage import UsageService
from keystead.control.vault import VaultService
from keystead.durations import parse_duration
from keystead.errors import GatewayError, InvalidField
from keystead.runtime import Runtime
from keystead.state.records import Limits

__all__ = ["Backend", "BackendError", "EmbeddedBackend", "RemoteBackend"]

T = TypeVar("T")


class BackendError(Exception):
    """A failure to show the user: the message says what and how to fix it.

    `status` is the HTTP-style status of the failure: 400 (bad input) exits 2, the rest 1.
    """

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status


class Backend(Protocol):
    """`limits` travel as plain dicts (limit -> value, the budget as decimal text); in the
    `changes` of an update, None clears a field and an absent field stays as it is."""

    def create_key(self, **fields: Any) -> dict[str, Any]: ...
    def list_keys(self) -> list[dict[str, Any]]: ...
    def show_key(self, key: str) -> dict[str, Any]: ...
    def update_key(self, key: str, changes: dict[str, Any]) -> dict[str, Any]: ...
    def create_team(self, **fields: Any) -> dict[str, Any]: ...
    def list_teams(self) -> list[dict[str, Any]]: ...
    def show_team(self, name: str) -> dict[str, Any]: ...
    def update_team(self, name: str, changes: dict[str, Any]) -> dict[str, Any]: ...
    def revoke_key(self, key: str, reason: str | None) -> dict[str, Any]: ...
    def rotate_key(self, key: str, grace: str) -> dict[str, Any]: ...
    def incident(self, key: str, reason: str | None, replace: bool) -> dict[str, Any]: ...
    def mint_token(self, key: str, options: dict[str, Any]) -> dict[str, Any]: ...
    def events(self, query: dict[str, Any]) -> list[dict[str, Any]]: ...
    def routes(self) -> list[dict[str, Any]]: ...
    def due_keys(self, within: str) -> list[dict[str, Any]]: ...
    def set_disabled(self, key: str, disabled: bool) -> dict[str, Any]: ...
    def add_provider(self, **fields: Any) -> dict[str, Any]: ...
    def list_providers(self) -> list[dict[str, Any]]: ...
    def test_provider(self, name: str) -> dict[str, Any]: ...
    def remove_provider(self, name: str) -> None: ...
    def set_provider_key(self, name: str, api_key: str,
                         label: str | None = None) -> dict[str, Any]: ...
    def show_provider(self, name: str) -> dict[str, Any]: ...
    def add_provider_key(self, name: str, api_key: str | None,
                         api_key_ref: str | None) -> dict[str, Any]: ...
    def remove_provider_key(self, name: str, label: str) -> dict[str, Any]: ...
    def enable_provider_key(self, name: str, label: str) -> dict[str, Any]: ...
    def usage(self, by: str, since: str,
              filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]: ...
    def reload_config(self) -> dict[str, Any]: ...


class EmbeddedBackend:
    """Opens the store of this machine's config, does one thing, closes it."""

    def __init__(self, loaded: LoadedConfig):
        self.loaded = loaded

    def _run(self, action: Callable[[Runtime], Awaitable[T]]) -> T:
        async def main() -> T:
            runtime = await Runtime.open(self.loaded, serving=False)
            try:
                return await action(runtime)
            finally:
                await runtime.close()

        try:
            return asyncio.run(main())
        except GatewayError as exc:
            raise BackendError(exc.message, exc.status) from None

    def create_key(self, **fields: Any) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            created = await KeyService(rt).create(**_with_limits(fields))
            return {**KeyService(rt).view(created.record), "key": created.text}
        return self._run(action)

    def update_key(self, key: str, changes: dict[str, Any]) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return KeyService(rt).view(await KeyService(rt).update(key, **changes))
        return self._run(action)

    def create_team(self, **fields: Any) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            fields_ = _with_limits(fields)
            return team_view(await TeamService(rt).create(fields_.pop("name"), **fields_))
        return self._run(action)

    def list_teams(self) -> list[dict[str, Any]]:
        async def action(rt: Runtime) -> list[dict[str, Any]]:
            return [team_view(t) for t in await TeamService(rt).list()]
        return self._run(action)

    def show_team(self, name: str) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return team_view(await TeamService(rt).get(name))
        return self._run(action)

    def update_team(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return team_view(await TeamService(rt).update(name, **changes))
        return self._run(action)

    def list_keys(self) -> list[dict[str, Any]]:
        async def action(rt: Runtime) -> list[dict[str, Any]]:
            return [KeyService(rt).view(k) for k in await KeyService(rt).list()]
        return self._run(action)

    def show_key(self, key: str) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return KeyService(rt).view(await KeyService(rt).get(key))
        return self._run(action)

    def rotate_key(self, key: str, grace: str) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            service = KeyService(rt)
            created = await service.rotate(key, _seconds(grace, "grace"))
            return {**service.view(created.record), "key": created.text}
        return self._run(action)

    def routes(self) -> list[dict[str, Any]]:
        from keystead.control.routes import route_status

        return self._run(route_status)

    def reload_config(self) -> dict[str, Any]:
        """Ask every gateway on this store to re-read its config file (this one was read and
        validated when the command started)."""
        from keystead.reload import ask_everyone

        async def action(rt: Runtime) -> dict[str, Any]:
            return {"others": await ask_everyone(rt)}
        return self._run(action)

    def events(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        async def action(rt: Runtime) -> list[dict[str, Any]]:
            since = _seconds(query["since"], "since") if query.get("since") else None
            found = await EventService(rt).list(key=query.get("key"), kind=query.get("kind"),
                                                since_s=since, limit=query.get("limit", 100))
            return [event_view(e) for e in found]
        return self._run(action)

    def mint_token(self, key: str, options: dict[str, Any]) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return (await TokenService(rt).mint_for(key, **options)).as_dict()
        return self._run(action)

    def incident(self, key: str, reason: str | None, replace: bool) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            found = await IncidentService(rt).respond(key, reason=reason, replace=replace)
            return found.as_dict()
        return self._run(action)

    def due_keys(self, within: str) -> list[dict[str, Any]]:
        async def action(rt: Runtime) -> list[dict[str, Any]]:
            service = KeyService(rt)
            return [service.view(k) for k in await service.due(_seconds(within, "due"))]
        return self._run(action)

    def revoke_key(self, key: str, reason: str | None) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return KeyService(rt).view(await KeyService(rt).revoke(key, reason))
        return self._run(action)

    def set_disabled(self, key: str, disabled: bool) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return KeyService(rt).view(await KeyService(rt).set_disabled(key, disabled))
        return self._run(action)

    def add_provider(self, **fields: Any) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return await ProviderService(rt).add(**fields)
        return self._run(action)

    def list_providers(self) -> list[dict[str, Any]]:
        async def action(rt: Runtime) -> list[dict[str, Any]]:
            return ProviderService(rt).list()
        return self._run(action)

    def test_provider(self, name: str) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return await ProviderService(rt).test(name)
        return self._run(action)

    def remove_provider(self, name: str) -> None:
        async def action(rt: Runtime) -> None:
            await ProviderService(rt).remove(name)
        self._run(action)

    def set_provider_key(self, name: str, api_key: str,
                         label: str | None = None) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return await ProviderService(rt).set_key(name, api_key, label)
        return self._run(action)

    def show_provider(self, name: str) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return ProviderService(rt).get(name)
        return self._run(action)

    def add_provider_key(self, name: str, api_key: str | None,
                         api_key_ref: str | None) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return await ProviderService(rt).add_key(name, api_key=api_key,
                                                     api_key_ref=api_key_ref)
        return self._run(action)

    def remove_provider_key(self, name: str, label: str) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return await ProviderService(rt).remove_key(name, label)
        return self._run(action)

    def enable_provider_key(self, name: str, label: str) -> dict[str, Any]:
        async def action(rt: Runtime) -> dict[str, Any]:
            return await ProviderService(rt).enable_key(name, label)
        return self._run(action)

    def usage(self, by: str, since: str,
              filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        from keystead.durations import parse_duration

        window = parse_duration(since)

        async def action(rt: Runtime) -> list[dict[str, Any]]:
            rows = await UsageService(rt).report(by, window, filters)  # type: ignore[arg-type]
            return [row.as_dict() for row in rows]
        return self._run(action)

    def rotate_master(self, new_key: str) -> int:
        async def action(rt: Runtime) -> int:
            return await VaultService(rt).rotate_master(new_key)
        return self._run(action)


class RemoteBackend:
    """The same operations through a running gateway's admin API."""

    def __init__(self, server: str, token: str | None, timeout: float = 30.0):
        self.base = server.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if not self.token:
            raise BackendError("--server needs the admin token: set KEYSTEAD_ADMIN_TOKEN or "
                               "pass --admin-token", 400)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (the operator chose the URL)
            self.base + path, data=data, method=method,
            headers={"authorization": f"Bearer {self.token}",
                     "content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise BackendError(_error_message(exc.read(), exc.code), exc.code) from None
        except urllib.error.URLError as exc:
            raise BackendError(f"cannot reach {self.base}: {exc.reason}") from None
        return json.loads(payload) if payload else None

    def create_key(self, **fields: Any) -> dict[str, Any]:
        expires = fields.pop("expires_in_s", None)
        if expires is not None:
            fields["expires"] = f"{int(expires)}s"
        return self._call("POST", "/admin/keys", fields)  # type: ignore[no-any-return]

    def list_keys(self) -> list[dict[str, Any]]:
        return self._call("GET", "/admin/keys")  # type: ignore[no-any-return]

    def update_key(self, key: str, changes: dict[str, Any]) -> dict[str, Any]:
        body = dict(changes)
        if "expires_in_s" in body:
            expires = body.pop("expires_in_s")
            body["expires"] = None if expires is None else f"{int(expires)}s"
        return self._call("PATCH", f"/admin/keys/{urllib.parse.quote(key)}", body)  # type: ignore[no-any-return]

    def create_team(self, **fields: Any) -> dict[str, Any]:
        return self._call("POST", "/admin/teams", fields)  # type: ignore[no-any-return]

    def list_teams(self) -> list[dict[str, Any]]:
        return self._call("GET", "/admin/teams")  # type: ignore[no-any-return]

    def show_team(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/admin/teams/{urllib.parse.quote(name)}")  # type: ignore[no-any-return]

    def update_team(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/admin/teams/{urllib.parse.quote(name)}", changes)  # type: ignore[no-any-return]

    def show_key(self, key: str) -> dict[str, Any]:
        return self._call("GET", f"/admin/keys/{urllib.parse.quote(key)}")  # type: ignore[no-any-return]

    def rotate_key(self, key: str, grace: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/keys/{urllib.parse.quote(key)}/rotate",  # type: ignore[no-any-return]
                          {"grace": grace})

    def routes(self) -> list[dict[str, Any]]:
        return self._call("GET", "/admin/routes")  # type: ignore[no-any-return]

    def reload_config(self) -> dict[str, Any]:
        return self._call("POST", "/admin/reload")  # type: ignore[no-any-return]

    def events(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return self._call("GET", f"/admin/events?{params}")  # type: ignore[no-any-return]

    def mint_token(self, key: str, options: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/admin/tokens", {"key": key, **options})  # type: ignore[no-any-return]

    def incident(self, key: str, reason: str | None, replace: bool) -> dict[str, Any]:
        return self._call("POST", "/admin/incidents",  # type: ignore[no-any-return]
                          {"key": key, "reason": reason, "replace": replace})

    def due_keys(self, within: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"due_within": within})
        return self._call("GET", f"/admin/keys?{query}")  # type: ignore[no-any-return]

    def revoke_key(self, key: str, reason: str | None) -> dict[str, Any]:
        return self._call("POST", f"/admin/keys/{urllib.parse.quote(key)}/revoke",  # type: ignore[no-any-return]
                          {"reason": reason})

    def set_disabled(self, key: str, disabled: bool) -> dict[str, Any]:
        action = "disable" if disabled else "enable"
        return self._call("POST", f"/admin/keys/{urllib.parse.quote(key)}/{action}")  # type: ignore[no-any-return]

    def add_provider(self, **fields: Any) -> dict[str, Any]:
        return self._call("POST", "/admin/providers", fields)  # type: ignore[no-any-return]

    def list_providers(self) -> list[dict[str, Any]]:
        return self._call("GET", "/admin/providers")  # type: ignore[no-any-return]

    def test_provider(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/providers/{urllib.parse.quote(name)}/test")  # type: ignore[no-any-return]

    def remove_provider(self, name: str) -> None:
        self._call("DELETE", f"/admin/providers/{urllib.parse.quote(name)}")

    def set_provider_key(self, name: str, api_key: str,
                         label: str | None = None) -> dict[str, Any]:
        # label is sent only when given, so servers without pools still accept the rest.
        body = {"api_key": api_key, **({"label": label} if label is not None else {})}
        return self._call("PUT", f"/admin/providers/{urllib.parse.quote(name)}/key",  # type: ignore[no-any-return]
                          body)

    def show_provider(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/admin/providers/{urllib.parse.quote(name)}")  # type: ignore[no-any-return]

    def add_provider_key(self, name: str, api_key: str | None,
                         api_key_ref: str | None) -> dict[str, Any]:
        body = {"api_key": api_key} if api_key is not None else {"api_key_ref": api_key_ref}
        return self._call("POST", f"/admin/providers/{urllib.parse.quote(name)}/keys",  # type: ignore[no-any-return]
                          body)

    def remove_provider_key(self, name: str, label: str) -> dict[str, Any]:
        path = f"/admin/providers/{_quote(name)}/keys/{_quote(label.lstrip('#'))}"
        return self._call("DELETE", path)  # type: ignore[no-any-return]

    def enable_provider_key(self, name: str, label: str) -> dict[str, Any]:
        path = f"/admin/providers/{_quote(name)}/keys/{_quote(label.lstrip('#'))}/enable"
        return self._call("POST", path)  # type: ignore[no-any-return]

    def usage(self, by: str, since: str,
              filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"by": by, "since": since, **(filters or {})})
        return self._call("GET", f"/admin/usage?{query}")["rows"]  # type: ignore[no-any-return]


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _with_limits(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with its `limits` dict (as the CLI and the admin API write it) made a Limits."""
    limits = fields.get("limits")
    if limits is None or isinstance(limits, Limits):
        return dict(fields)
    return {**fields, "limits": apply_limit_changes(Limits(), limits)}


def _error_message(payload: bytes, status: int) -> str:
    try:
        return str(json.loads(payload)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"the gateway answered HTTP {status}"


def _seconds(text: str, param: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidField(str(exc), param=param) from None
