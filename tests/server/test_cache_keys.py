"""A key's say on the response cache (P17), through the real app with the official openai SDK:
a key with `cache: false` never reads or writes it, a route whose cache is `opt_in` caches only
for keys with `cache: true`, and keys left at the default behave as the route says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai

from route_support import (
    FAST_RETRY,
    MODELS,
    RouteTest,
    ask,
    received,
    row,
    run_gateway,
)
from support import AppClient

STATIC = "We are busy; try again soon."


def routing_config(**cache: Any) -> dict[str, Any]:
    """`cached` (a route with a cache, `cache` overriding its settings) and `uncached`, both on
    one mock provider `primary`."""
    deployments = [{"provider": "primary", "model": "gpt-4o-mini"}]
    return {
        "providers": {"primary": {"type": "mock", "models": MODELS}},
        "routes": {
            "cached": {"retry": FAST_RETRY, "deployments": deployments,
                       "cache": {"ttl": "10m", **cache},
                       "degraded": {"static_reply": STATIC}},
            "uncached": {"retry": FAST_RETRY, "deployments": deployments},
        },
    }


def run(tmp_path: Path, test: RouteTest, raw: dict[str, Any] | None = None) -> None:
    run_gateway(tmp_path, test, raw or routing_config())


async def keys_of_team(client: AppClient, sdk: openai.AsyncOpenAI, team: str,
                       **named: bool | None) -> dict[str, openai.AsyncOpenAI]:
    """A client per key of a new team, each key named `dev-{team}-{name}` with `cache` as
    given (None: the field is not sent)."""
    reply = await client.admin("POST", "/admin/teams", {"name": team})
    assert reply.status == 201, reply.body
    clients = {}
    for name, cache in named.items():
        fields: dict[str, Any] = {"team": team} if cache is None else {"team": team,
                                                                       "cache": cache}
        key = await client.create_key(f"dev-{team}-{name}", **fields)
        clients[name] = sdk.with_options(api_key=key)
    return clients


async def hit(sdk: openai.AsyncOpenAI, text: str, model: str = "cached") -> bool:
    """Whether the answer to `text` came from the cache."""
    raw = await sdk.chat.completions.with_raw_response.create(model=model, messages=ask(text))
    assert raw.http_response.status_code == 200
    return raw.headers.get("x-keystead-cache") == "hit"


def test_a_key_with_the_cache_off_never_reads_or_writes_it(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        team = await keys_of_team(client, sdk, "alpha", pii=False, mate=None)
        pii, mate = team["pii"], team["mate"]

        # Asked twice, the key with the cache off calls the provider twice.
        assert not await hit(pii, "my passport number is X1234567")
        raw = await pii.chat.completions.with_raw_response.create(
            model="cached", messages=ask("my passport number is X1234567"))
        assert "x-keystead-cache" not in raw.headers
        assert float(raw.headers["x-keystead-cost-usd"]) > 0
        assert received(client, "primary") == 2
        # Nothing of its was stored for the rest of its team.
        assert not await hit(mate, "my passport number is X1234567")
        assert received(client, "primary") == 3
        # Its ledger rows say it was not cached at all (not a miss).
        record = await row(client, raw.headers["x-request-id"])
        assert (record.cache, record.saved_usd) == (None, 0)

        # A team-mate's stored answer is not served to it either ...
        assert not await hit(mate, "what is a gateway?")
        assert await hit(mate, "what is a gateway?")
        assert not await hit(pii, "what is a gateway?")
        assert received(client, "primary") == 5
        # ... not even streamed ...
        stream = await pii.chat.completions.with_raw_response.create(
            model="cached", messages=ask("what is a gateway?"), stream=True)
        assert "x-keystead-cache" not in stream.headers
        assert "".join([c.choices[0].delta.content or "" async for c in stream.parse()
                        if c.choices])
        assert received(client, "primary") == 6
        # ... nor in degraded mode: the stale answer is the team's, the key gets the static
        # reply.
        failing = "[[mock:faults=ok,503*]] status of my order?"
        assert not await hit(mate, failing)
        served = await mate.chat.completions.with_raw_response.create(
            model="cached", messages=ask(failing), extra_headers={"cache-control": "no-cache"})
        assert served.headers["x-keystead-degraded"] == "cached"
        refused = await pii.chat.completions.with_raw_response.create(
            model="cached", messages=ask(failing))
        assert refused.headers["x-keystead-degraded"] == "static"
        assert refused.parse().choices[0].message.content == STATIC

    run(tmp_path, test)


def test_on_an_opt_in_route_only_keys_with_the_cache_on_get_hits(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        team = await keys_of_team(client, sdk, "alpha", on=True, plain=None, off=False)
        on, plain, off = team["on"], team["plain"], team["off"]

        # A key that did not opt in neither reads nor writes.
        assert not await hit(plain, "hello")
        assert not await hit(plain, "hello")
        assert not await hit(off, "hello")
        assert received(client, "primary") == 3
        # The key that opted in stores its answer and gets hits ...
        assert not await hit(on, "hello")
        assert await hit(on, "hello")
        assert received(client, "primary") == 4
        # ... which the others of its team still do not get.
        assert not await hit(plain, "hello")
        assert not await hit(off, "hello")
        assert received(client, "primary") == 6
        # The gateway's own key (no team, default) is not cached either.
        assert not await hit(sdk, "hello")
        assert not await hit(sdk, "hello")

        # Opting a key in through the admin API takes effect at once.
        key = plain.api_key
        updated = await client.admin("PATCH", "/admin/keys/dev-alpha-plain", {"cache": True})
        assert updated.status == 200 and updated.json()["cache"] is True
        assert await hit(sdk.with_options(api_key=key), "hello")  # the team's entry
        # And null gives the say back to the route.
        reset = await client.admin("PATCH", "/admin/keys/dev-alpha-plain", {"cache": None})
        assert reset.status == 200 and reset.json()["cache"] is None
        assert not await hit(sdk.with_options(api_key=key), "hello")

    run(tmp_path, test, routing_config(opt_in=True))


def test_keys_left_at_the_default_are_cached_as_before(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        team = await keys_of_team(client, sdk, "alpha", one=None, two=None, on=True)
        # Team-mates share the answers, a key with the cache on too (the route is not
        # opt-in: on and default are the same there).
        assert not await hit(team["one"], "hello")
        assert await hit(team["two"], "hello")
        assert await hit(team["on"], "hello")
        assert await hit(sdk, "hello") is False  # no team: its own entries
        assert received(client, "primary") == 2
        # A route without a cache caches for no key, opted in or not.
        assert not await hit(team["on"], "hello", model="uncached")
        assert not await hit(team["on"], "hello", model="uncached")
        assert received(client, "primary") == 4
        # Cache-Control still works per request for them.
        assert not await hit(team["one"], "fresh")
        fresh = await team["two"].chat.completions.with_raw_response.create(
            model="cached", messages=ask("fresh"), extra_headers={"cache-control": "no-cache"})
        assert "x-keystead-cache" not in fresh.headers

    run(tmp_path, test)


def test_the_admin_api_shows_and_checks_the_cache_setting(tmp_path: Path) -> None:
    async def test(client: AppClient, sdk: openai.AsyncOpenAI) -> None:
        created = await client.admin("POST", "/admin/keys", {"name": "dev-pii-app",
                                                             "cache": False})
        assert created.status == 201 and created.json()["cache"] is False
        shown = await client.admin("GET", "/admin/keys/dev-pii-app")
        assert shown.json()["cache"] is False
        listed = await client.admin("GET", "/admin/keys")
        assert {k["name"]: k["cache"] for k in listed.json()} == {
            "dev-test-app": None, "dev-pii-app": False}
        # Other changes leave it alone.
        other = await client.admin("PATCH", "/admin/keys/dev-pii-app", {"owner": "ana"})
        assert other.json()["cache"] is False
        for bad in ("maybe", 2, [True]):
            refused = await client.admin("PATCH", "/admin/keys/dev-pii-app", {"cache": bad})
            assert refused.status == 400, bad
            assert refused.json()["error"]["param"] == "cache"
        assert (await client.admin("GET", "/admin/keys/dev-pii-app")).json()["cache"] is False
        events = await client.admin("GET", "/admin/events?kind=key.updated")
        assert [e["detail"]["fields"] for e in events.json()] == [["owner"]]

    run(tmp_path, test)
