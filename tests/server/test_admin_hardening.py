"""The admin API against hostile values from an admin-token holder (issue 13): integers past
any column or counter, strings with control characters or megabytes, bodies past the limit,
any bytes in the Authorization header, methods a path does not serve; and /admin/docs works
offline. Every answer is the OpenAI envelope with a code, never a 500."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import ADMIN_TOKEN, AppClient, Reply, make_loaded, running_app, serving_asgi

AppTest = Callable[[AppClient], Awaitable[None]]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[AppTest], None]]:
    """One app for the module; each test runs in its event loop."""
    loop = asyncio.new_event_loop()
    loaded = make_loaded(tmp_path_factory.mktemp("hardening"))
    manager = running_app(loaded)
    client = loop.run_until_complete(manager.__aenter__())
    try:
        yield lambda test: loop.run_until_complete(asyncio.wait_for(test(client), 30))
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()


def refused(reply: Reply, status: int, code: str) -> dict[str, Any]:
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    return dict(error)


HUGE = 2**64 + 1


@pytest.mark.parametrize(("method", "path", "body", "param"), [
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "max_tokens": HUGE}, "max_tokens"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "max_tokens": 2**31}, "max_tokens"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "max_body_bytes": HUGE}, "max_body_bytes"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "limits": {"rpm": 2**63}}, "limits.rpm"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "limits": {"tpd": -1}}, "limits.tpd"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "limits": {"budget_usd": "1e30"}},
     "limits.budget_usd"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "limits": {"budget_usd": "NaN"}},
     "limits.budget_usd"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "limits": {"budget_usd": "0.0000000001"}},
     "limits.budget_usd"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "expires": "9" * 30 + "d"}, "expires"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "expires": "99999999w"}, "expires"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "description": "a\x00b"}, "description"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-\x01"}, "name"),
    ("POST", "/admin/keys", {"name": "dev-" + "a" * 10_000}, "name"),
    ("POST", "/admin/keys", {"name": "dev-a-bot-01", "models": ["m"] * 5000}, "models"),
    ("POST", "/admin/teams", {"name": "t", "limits": {"max_parallel": HUGE}},
     "limits.max_parallel"),
    ("POST", "/admin/teams", {"name": "t", "owner": "x" * 300}, "owner"),
    ("POST", "/admin/tokens", {"key": "dev-a-bot-01", "rpm": HUGE}, "rpm"),
    ("POST", "/admin/tokens", {"key": "dev-a-bot-01", "max_tokens": HUGE}, "max_tokens"),
    ("POST", "/admin/keys/dev-a-bot-01/rotate", {"grace": "1" * 40 + "s"}, "grace"),
    ("POST", "/admin/keys/dev-a-bot-01/revoke", {"reason": "r" * 5000}, "reason"),
    ("POST", "/admin/incidents", {"key": "dev-a-bot-01", "reason": "\x1b[31m"}, "reason"),
    ("POST", "/admin/providers", {"name": "p", "type": "mock", "models": ["m\x00"]},
     "models.0"),
    ("GET", "/admin/events?limit=99999999999999999999999", None, "limit"),
    ("GET", "/admin/events?since=99999999999999d", None, "since"),
    ("GET", "/admin/keys?due_within=1e400d", None, "due_within"),
    ("GET", "/admin/usage?since=" + "9" * 400 + "d", None, "since"),
    ("GET", "/admin/usage?key=%00", None, "key"),
    ("GET", "/admin/keys/\x00", None, "key"),  # a server decodes %00 into the path
    ("GET", "/admin/keys/" + "k" * 300, None, "key"),
])
def test_hostile_values_are_400s_naming_the_parameter(app: Callable[[AppTest], None],
                                                      method: str, path: str, body: Any,
                                                      param: str) -> None:
    async def test(client: AppClient) -> None:
        reply = await client.admin(method, path, body)
        error = refused(reply, 400, "invalid_value")
        assert error["param"] == param, error

    app(test)


def test_a_body_over_a_megabyte_is_a_413(app: Callable[[AppTest], None]) -> None:
    async def test(client: AppClient) -> None:
        reply = await client.request("POST", "/admin/keys", body=b"{" + b" " * (1 << 21) + b"}",
                                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        refused(reply, 413, "request_too_large")

    app(test)


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/admin/keys/some-key", "GET, PATCH"),
    ("PUT", "/admin/keys", "GET, POST"),
    ("GET", "/admin/keys/some-key/rotate", "POST"),
    ("PATCH", "/admin/providers/p", "DELETE, GET"),
    ("GET", "/admin/providers/p/keys/2", "DELETE"),
    ("POST", "/admin/status", "GET"),
    ("POST", "/admin/docs", "GET"),
])
def test_a_405_names_every_method_the_path_serves(app: Callable[[AppTest], None], method: str,
                                                  path: str, allow: str) -> None:
    async def test(client: AppClient) -> None:
        reply = await client.admin(method, path, {})
        error = refused(reply, 405, "method_not_allowed")
        assert reply.headers["allow"] == allow
        assert f"It accepts {allow}." in error["message"]

    app(test)


@pytest.mark.parametrize("authorization", [
    "Bearer tökén-ünïcödé",
    "Bearer " + "\u202e" * 100,
    "Bearer " + "x" * 200_000,
    "Bearer " + ADMIN_TOKEN + "é",
    "bearer    ",
], ids=["non-ascii", "bidi", "huge", "token-plus-non-ascii", "blank"])
def test_any_authorization_header_is_a_401(app: Callable[[AppTest], None],
                                           authorization: str) -> None:
    async def test(client: AppClient) -> None:
        reply = await client.request("GET", "/admin/keys", headers={"authorization":
                                                                    authorization})
        refused(reply, 401, "invalid_api_key")

    app(test)


def test_header_bytes_that_are_not_utf8_are_a_401_on_a_real_server(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_app(make_loaded(tmp_path)) as client, \
                serving_asgi(client.app) as base:
            port = int(base.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /admin/keys HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer \xff\xfe\x80" + ADMIN_TOKEN.encode() +
                         b"\r\nConnection: close\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
            assert b'"code":"invalid_api_key"' in answer

    asyncio.run(main())


def test_the_docs_load_with_no_external_url(app: Callable[[AppTest], None]) -> None:
    """/admin/docs and everything it loads come from this gateway: an offline site gets the
    page, not a blank one."""
    async def test(client: AppClient) -> None:
        page = await client.request("GET", "/admin/docs")
        assert page.status == 200 and page.headers["content-type"].startswith("text/html")
        html = page.body.decode()
        assert "SwaggerUIBundle" in html
        assert not re.search(r"https?://|//cdn", html), html
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert len(assets) >= 3 and all(a.startswith("/admin/docs/assets/") for a in assets)
        for asset in assets:
            loaded = await client.request("GET", asset)
            assert loaded.status == 200 and len(loaded.body) > 1000, asset
        assert re.search(r"url: '/admin/openapi.json'", html)
        document = await client.request("GET", "/admin/openapi.json")
        assert document.status == 200 and document.json()["info"]["title"]

    app(test)


def test_the_openapi_document_states_the_ranges(app: Callable[[AppTest], None]) -> None:
    """The bounds are in the document, so clients (and the fuzz suite) see them."""
    async def test(client: AppClient) -> None:
        schemas = (await client.request("GET", "/admin/openapi.json")).json()["components"][
            "schemas"]
        max_tokens = schemas["KeyCreate"]["properties"]["max_tokens"]["anyOf"][0]
        assert max_tokens == {"type": "integer", "maximum": 2**31 - 1, "minimum": 1}
        rpm = schemas["LimitsIn"]["properties"]["rpm"]["anyOf"][0]
        assert rpm["maximum"] == 10**12
        name = schemas["KeyCreate"]["properties"]["name"]
        assert name["maxLength"] == 128 and "pattern" in name

    app(test)
