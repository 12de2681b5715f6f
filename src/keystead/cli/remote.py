"""The remote backend (--server): the same operations through a running gateway's admin API,
over the standard library's HTTP client (aiohttp alone would take longer to import than a
call takes)."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from keystead.cli.backend import BackendError
from keystead.providers.served import unserved

__all__ = ["RemoteBackend"]


class RemoteBackend:
    """The same operations through a running gateway's admin API."""

    def __init__(self, server: str, token: str | None, timeout: float = 30.0):
        parts = urllib.parse.urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(f"--server {server!r} is not a gateway's URL: write it as "
                               "http://HOST:PORT or https://HOST", 400)
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
        except (OSError, http.client.HTTPException) as exc:  # reset, timed out, not HTTP
            raise BackendError(f"{self.base} did not answer: {exc or type(exc).__name__}") \
                from None
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            raise BackendError(f"{self.base} answered something other than JSON: is it a "
                               "keystead gateway?") from None

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

    def check(self, providers: list[str], routes: list[str]) -> dict[str, Any]:
        return self._call("POST", "/admin/checks",  # type: ignore[no-any-return]
                          {"providers": providers, "routes": routes})

    def reload_config(self) -> dict[str, Any]:
        return self._call("POST", "/admin/reload")  # type: ignore[no-any-return]

    def events(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return self._call("GET", f"/admin/events?{params}")  # type: ignore[no-any-return]

    def alerts(self) -> list[dict[str, Any]]:
        return self._call("GET", "/admin/alerts")  # type: ignore[no-any-return]

    def test_alerts(self, channel: str | None) -> list[dict[str, Any]]:
        return self._call("POST", "/admin/alerts/test", {"channel": channel})  # type: ignore[no-any-return]

    def silence_alert(self, target: str, duration: str, reason: str | None) -> dict[str, Any]:
        return self._call("POST", "/admin/alerts/silences",  # type: ignore[no-any-return]
                          {"target": target, "for": duration, "reason": reason})

    def unsilence_alert(self, target: str) -> dict[str, Any]:
        return self._call("DELETE",  # type: ignore[no-any-return]
                          "/admin/alerts/silences?" + urllib.parse.urlencode({"target": target}))

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

    def unserved_models(self, models: list[str]) -> list[str]:
        served = {p["name"]: list(p.get("models") or ()) for p in self.list_providers()}
        return unserved(models, served, [r["route"] for r in self.routes()])


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _error_message(payload: bytes, status: int) -> str:
    try:
        return str(json.loads(payload)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"the gateway answered HTTP {status}"
