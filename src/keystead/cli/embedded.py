"""The embedded backend: a command opens the store of this machine's config, does one thing,
closes it.

Keys, teams, events, usage, incidents, tokens and the vault need only the store and the vault:
they open a `StoreSession` (control/session.py), which starts without the serving machinery.
Providers and routes need the providers themselves, and open the gateway's whole `Runtime`;
those imports stay inside their methods so the other commands never load them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from keystead.cli.backend import BackendError
from keystead.control.events import EventService, event_view
from keystead.control.incident import IncidentService
from keystead.control.keys import KeyService
from keystead.control.session import StoreSession
from keystead.control.teams import TeamService, apply_limit_changes, team_view
from keystead.control.usage import UsageService
from keystead.control.vault import VaultService
from keystead.durations import parse_duration
from keystead.errors import GatewayError, InvalidField
from keystead.providers.served import unserved
from keystead.state.records import Limits

if TYPE_CHECKING:
    from keystead.config.load import LoadedConfig
    from keystead.control.plane import ControlPlane
    from keystead.control.providers import ProviderService
    from keystead.runtime import Runtime

__all__ = ["EmbeddedBackend"]

T = TypeVar("T")


class EmbeddedBackend:
    """One store session for the whole command, opened by its first call and closed by
    `close()` (State registers it with click's context), on one event loop: a command that
    makes several calls (create, then the scope check; scan --revoke) opens the store once."""

    def __init__(self, loaded: LoadedConfig):
        self.loaded = loaded
        self._loop: asyncio.Runner | None = None
        self._store: StoreSession | None = None

    def _session(self, action: Callable[[ControlPlane], Awaitable[T]]) -> T:
        async def main() -> T:
            if self._store is None:
                self._store = await StoreSession.open(self.loaded)
            return await action(self._store)

        return self._run(main())

    def _runtime(self, action: Callable[[Runtime], Awaitable[T]]) -> T:
        from keystead.runtime import Runtime

        async def main() -> T:
            runtime = await Runtime.open(self.loaded, serving=False)
            try:
                return await action(runtime)
            finally:
                await runtime.close()

        return self._run(main())

    def _run(self, main: Coroutine[Any, Any, T]) -> T:
        from sqlalchemy.exc import OperationalError  # loaded with the store already

        if self._loop is None:
            self._loop = asyncio.Runner()
        try:
            return self._loop.run(main)
        except GatewayError as exc:
            raise BackendError(exc.message, exc.status) from None
        except (OSError, OperationalError) as exc:  # the database is unreachable, locked, gone
            raise BackendError(f"cannot use the store at {_shown_url(self.loaded.store_url())}: "
                               f"{_reason(exc)}") from None

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            if self._store is not None:
                self._loop.run(self._store.close())
        finally:
            self._store = None
            self._loop.close()
            self._loop = None

    def _providers(self, call: Callable[[ProviderService], Awaitable[T]]) -> T:
        from keystead.control.providers import ProviderService

        async def action(rt: Runtime) -> T:
            return await call(ProviderService(rt))
        return self._runtime(action)

    # keys
    def create_key(self, **fields: Any) -> dict[str, Any]:
        async def action(cp: ControlPlane) -> dict[str, Any]:
            created = await KeyService(cp).create(**_with_limits(fields))
            return {**KeyService(cp).view(created.record), "key": created.text}
        return self._session(action)

    def update_key(self, key: str, changes: dict[str, Any]) -> dict[str, Any]:
        async def action(cp: ControlPlane) -> dict[str, Any]:
            return KeyService(cp).view(await KeyService(cp).update(key, **changes))
        return self._session(action)

    def list_keys(self) -> list[dict[str, Any]]:
        async def action(cp: ControlPlane) -> list[dict[str, Any]]:
            return [KeyService(cp).view(k) for k in await KeyService(cp).list()]
        return self._session(action)

    def show_key(self, key: str) -> dict[str, Any]:
        async def action(cp: ControlPlane) -> dict[str, Any]:
            return KeyService(cp).view(await KeyService(cp).get(key))
        return self._session(action)

    def rotate_key(self, key: str, grace: str) -> dict[str, Any]:
        async def action(cp: ControlPlane) -> dict[str, Any]:
            service = KeyService(cp)
            created = await service.rotate(key, _seconds(grace, "grace"))
            return {**service.view(created.record), "key": created.text}
        return self._session(action)

    def due_keys(self, within: str) -> list[dict[str, Any]]:
        async def action(cp: ControlPlane) -> list[dict[str, Any]]:
            service = KeyService(cp)
            return [service.view(k) for k in await service.due(_seconds(within, "due"))]
        return self._session(action)

    def revoke_key(self, key: str, reason: str | None) -> dict[str, Any]:
        async def action(cp: ControlPlane) -> dict[str, Any]:
            return KeyService(cp).view(await KeyService(cp).revoke(key, reason))
        return self._session(action)

    def set_disabled(self, key: str, disabled: bool) -> dict[str, Any]:
        async def action(cp: ControlPlane) -> dict[str, Any]:
            return KeyService(cp).view(await KeyService(cp).set_disabled(key, disabled))
        return self._session(action)

    def unserved_models(self, models: list[str]) -> list[str]:
        async def action(cp: ControlPlane) -> list[str]:
            served = {name: list(p.models) for name, p in cp.config.providers.items()}
            for record in await cp.store.list_providers():
                served.setdefault(record.name, list(record.models))
            return unserved(models, served, cp.config.routes)
        return self._session(action)

    # teams
    def create_team(self, **fields: Any) -> dict[str, Any]:
        async def action(cp: ControlPlane) -> dict[str, Any]:
            fields_ = _with_limits(fields)
            return team_view(await TeamService(cp).create(fields_.pop("name"), **fields_))
        return self._session(action)

    def list_teams(self) -> list[dict[str, Any]]:
        async def action(cp: ControlPlane) -> list[dict[str, Any]]:
            return [team_view(t) for t in await TeamService(cp).list()]
        return self._session(action)

    def show_team(self, name: str) -> dict[str, Any]:
        async def action(cp: ControlPlane) -> dict[str, Any]:
            return team_view(await TeamService(cp).get(name))
        return self._session(action)

    def update_team(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        async def action(cp: ControlPlane) -> dict[str, Any]:
            return team_view(await TeamService(cp).update(name, **changes))
        return self._session(action)

    # events, incidents, tokens, usage, the vault
    def events(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        async def action(cp: ControlPlane) -> list[dict[str, Any]]:
            since = _seconds(query["since"], "since") if query.get("since") else None
            found = await EventService(cp).list(key=query.get("key"), kind=query.get("kind"),
                                                since_s=since, limit=query.get("limit", 100))
            return [event_view(e) for e in found]
        return self._session(action)

    # alerts (keystead.alerts.service, imported here: other commands never load it)
    def alerts(self) -> list[dict[str, Any]]:
        from keystead.alerts.service import AlertService

        async def action(cp: ControlPlane) -> list[dict[str, Any]]:
            return await AlertService(cp).list()
        return self._session(action)

    def test_alerts(self, channel: str | None) -> list[dict[str, Any]]:
        from keystead.alerts.service import AlertService

        async def action(cp: ControlPlane) -> list[dict[str, Any]]:
            return await AlertService(cp).test(channel)
        return self._session(action)

    def silence_alert(self, target: str, duration: str, reason: str | None) -> dict[str, Any]:
        from keystead.alerts.service import AlertService

        async def action(cp: ControlPlane) -> dict[str, Any]:
            return await AlertService(cp).silence(target, _seconds(duration, "for"), reason)
        return self._session(action)

    def unsilence_alert(self, target: str) -> dict[str, Any]:
        from keystead.alerts.service import AlertService

        async def action(cp: ControlPlane) -> dict[str, Any]:
            return await AlertService(cp).unsilence(target)
        return self._session(action)

    def incident(self, key: str, reason: str | None, replace: bool) -> dict[str, Any]:
        async def action(cp: ControlPlane) -> dict[str, Any]:
            found = await IncidentService(cp).respond(key, reason=reason, replace=replace)
            return found.as_dict()
        return self._session(action)

    def mint_token(self, key: str, options: dict[str, Any]) -> dict[str, Any]:
        from keystead.control.tokens import TokenService  # loads the scope checks of pipeline/

        async def action(cp: ControlPlane) -> dict[str, Any]:
            return (await TokenService(cp).mint_for(key, **options)).as_dict()
        return self._session(action)

    def usage(self, by: str, since: str,
              filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        window = parse_duration(since)

        async def action(cp: ControlPlane) -> list[dict[str, Any]]:
            rows = await UsageService(cp).report(by, window, filters)  # type: ignore[arg-type]
            return [row.as_dict() for row in rows]
        return self._session(action)

    def rotate_master(self, new_key: str) -> int:
        async def action(cp: ControlPlane) -> int:
            return await VaultService(cp).rotate_master(new_key)
        return self._session(action)

    # routes and providers: the gateway's runtime
    def routes(self) -> list[dict[str, Any]]:
        from keystead.control.routes import route_status

        return self._runtime(route_status)

    def check(self, providers: list[str], routes: list[str]) -> dict[str, Any]:
        from keystead.checks.run import CheckRunner

        async def action(rt: Runtime) -> dict[str, Any]:
            results = await CheckRunner(rt).run(providers, routes)
            return {"ok": all(r.ok for r in results), "results": [r.as_dict() for r in results]}
        return self._runtime(action)

    def reload_config(self) -> dict[str, Any]:
        """Ask every gateway on this store to re-read its config file (this one was read and
        validated when the command started). A store session is enough: no provider keys
        read, no data plane loaded."""
        from keystead.state.versions import CONFIG_VERSION, reload_asked

        async def action(cp: ControlPlane) -> dict[str, Any]:
            assert isinstance(cp, StoreSession)
            return {"others": reload_asked(await cp.announce(CONFIG_VERSION))}
        return self._session(action)

    def add_provider(self, **fields: Any) -> dict[str, Any]:
        return self._providers(lambda service: service.add(**fields))

    def list_providers(self) -> list[dict[str, Any]]:
        async def call(service: ProviderService) -> list[dict[str, Any]]:
            return service.list()
        return self._providers(call)

    def show_provider(self, name: str) -> dict[str, Any]:
        async def call(service: ProviderService) -> dict[str, Any]:
            return service.get(name)
        return self._providers(call)

    def test_provider(self, name: str) -> dict[str, Any]:
        return self._providers(lambda service: service.test(name))

    def remove_provider(self, name: str) -> None:
        self._providers(lambda service: service.remove(name))

    def set_provider_key(self, name: str, api_key: str,
                         label: str | None = None) -> dict[str, Any]:
        return self._providers(lambda service: service.set_key(name, api_key, label))

    def add_provider_key(self, name: str, api_key: str | None,
                         api_key_ref: str | None) -> dict[str, Any]:
        return self._providers(lambda service: service.add_key(name, api_key=api_key,
                                                                api_key_ref=api_key_ref))

    def remove_provider_key(self, name: str, label: str) -> dict[str, Any]:
        return self._providers(lambda service: service.remove_key(name, label))

    def enable_provider_key(self, name: str, label: str) -> dict[str, Any]:
        return self._providers(lambda service: service.enable_key(name, label))


def _shown_url(url: str) -> str:
    """The database URL without its password."""
    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper: the driver's own words
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _with_limits(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with its `limits` dict (as the CLI and the admin API write it) made a Limits."""
    limits = fields.get("limits")
    if limits is None or isinstance(limits, Limits):
        return dict(fields)
    return {**fields, "limits": apply_limit_changes(Limits(), limits)}


def _seconds(text: str, param: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidField(str(exc), param=param) from None
