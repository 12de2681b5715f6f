"""ChangeNotifier on the real Redis: notices reach the other processes, and the listener lives
through killed connections, outages, silent peers and failing handlers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from keystead.state.notify import ChangeNotifier
from redis_support import REDIS_URL, RedisProxy, closed_port, fresh_prefix, raw_redis, require_redis

pytestmark = pytest.mark.usefixtures("redis_up")


@pytest.fixture
def redis_up() -> None:
    require_redis()


class Inbox:
    """A listener callback that keeps what it hears."""

    def __init__(self, fail_on: str | None = None):
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.fail_on = fail_on

    async def __call__(self, name: str) -> None:
        if name == self.fail_on:
            raise RuntimeError(f"handler broke on {name}")
        self.queue.put_nowait(name)

    async def next(self, within_s: float = 1.0) -> str:
        return await asyncio.wait_for(self.queue.get(), within_s)


@asynccontextmanager
async def notifier(url: str = REDIS_URL, prefix: str | None = None, **options: Any
                   ) -> AsyncIterator[ChangeNotifier]:
    n = ChangeNotifier(url, prefix or fresh_prefix(), **options)
    try:
        yield n
    finally:
        await n.close()


async def subscribers(channel: str, count: int, within_s: float = 3.0) -> None:
    """Wait until `count` connections listen on `channel` (pub/sub drops earlier messages)."""
    async with raw_redis() as raw:
        deadline = time.monotonic() + within_s
        while (await raw.pubsub_numsub(channel))[0][1] != count:
            assert time.monotonic() < deadline, f"{channel} never had {count} subscribers"
            await asyncio.sleep(0.02)


def test_a_change_reaches_the_other_process_and_no_one_else() -> None:
    async def main() -> None:
        prefix = fresh_prefix()
        async with notifier(prefix=prefix) as a, notifier(prefix=prefix) as b, \
                notifier() as elsewhere:
            heard_a, heard_b, heard_elsewhere = Inbox(), Inbox(), Inbox()
            a.listen(heard_a)
            b.listen(heard_b)
            elsewhere.listen(heard_elsewhere)
            await subscribers(a.channel, 2)
            await subscribers(elsewhere.channel, 1)
            started = time.monotonic()
            assert await a.publish("keys")
            assert await heard_b.next() == "keys"
            assert time.monotonic() - started < 1.0
            assert await b.publish("providers:openai main")
            assert await heard_a.next() == "providers:openai main"
            await asyncio.sleep(0.1)
            # Its own notices do not come back to the publisher; other prefixes hear nothing.
            assert heard_a.queue.empty() and heard_b.queue.empty()
            assert heard_elsewhere.queue.empty()
            with pytest.raises(RuntimeError):
                a.listen(heard_a)

    asyncio.run(main())


def test_the_listener_survives_its_connection_being_killed() -> None:
    async def main() -> None:
        prefix = fresh_prefix()
        async with notifier(prefix=prefix) as sender, \
                notifier(prefix=prefix, backoff_s=(0.05, 0.2)) as listener, raw_redis() as raw:
            heard = Inbox()
            task = listener.listen(heard)
            await subscribers(listener.channel, 1)
            name = f"keystead-notify-{listener.origin}"
            ids = [c["id"] for c in await raw.client_list(_type="pubsub") if c["name"] == name]
            assert len(ids) == 1
            assert await raw.client_kill_filter(_id=ids[0]) == 1
            await subscribers(listener.channel, 1)  # back by itself
            assert await sender.publish("teams")
            assert await heard.next() == "teams"
            assert not task.done()

    asyncio.run(main())


def test_the_listener_reconnects_after_an_outage() -> None:
    async def main() -> None:
        prefix = fresh_prefix()
        async with RedisProxy() as proxy, notifier(prefix=prefix) as sender, \
                notifier(proxy.url, prefix, backoff_s=(0.05, 0.2)) as listener:
            heard = Inbox()
            task = listener.listen(heard)
            await subscribers(listener.channel, 1)
            await proxy.stop()
            await subscribers(listener.channel, 0)
            assert await sender.publish("missed")  # nobody listens: lost, by design
            await asyncio.sleep(0.4)  # a few refused reconnects
            assert not task.done()
            await proxy.start()
            await subscribers(listener.channel, 1)
            assert await sender.publish("keys")
            assert await heard.next() == "keys"

    asyncio.run(main())


def test_publish_works_right_after_its_connection_dropped() -> None:
    async def main() -> None:
        prefix = fresh_prefix()
        async with RedisProxy() as proxy, notifier(proxy.url, prefix) as sender, \
                notifier(prefix=prefix) as listener:
            heard = Inbox()
            listener.listen(heard)
            await subscribers(listener.channel, 1)
            assert await sender.publish("keys")
            assert await heard.next() == "keys"
            await proxy.cut()  # the publisher's pooled connection is dead now
            assert await sender.publish("teams")
            assert await heard.next() == "teams"

    asyncio.run(main())


def test_a_silent_connection_is_found_by_pinging_and_replaced() -> None:
    async def main() -> None:
        prefix = fresh_prefix()
        async with RedisProxy() as proxy, notifier(prefix=prefix) as sender, \
                notifier(proxy.url, prefix, backoff_s=(0.05, 0.2), idle_s=0.2) as listener:
            heard = Inbox()
            listener.listen(heard)
            await subscribers(listener.channel, 1)
            proxy.freeze()  # Redis still sees the old connection, which carries nothing now
            await subscribers(listener.channel, 2)  # the pings went unanswered: a new one
            assert await sender.publish("keys")
            assert await heard.next() == "keys"

    asyncio.run(main())


def test_a_failing_handler_does_not_stop_the_listener() -> None:
    async def main() -> None:
        prefix = fresh_prefix()
        async with notifier(prefix=prefix) as sender, notifier(prefix=prefix) as listener:
            heard = Inbox(fail_on="boom")
            task = listener.listen(heard)
            await subscribers(listener.channel, 1)
            assert await sender.publish("boom")
            assert await sender.publish("keys")
            assert await heard.next() == "keys"
            assert not task.done()

    asyncio.run(main())


def test_without_redis_publish_says_so_and_the_listener_keeps_trying() -> None:
    async def main() -> None:
        url = f"redis://127.0.0.1:{closed_port()}/0"
        async with notifier(url, backoff_s=(0.05, 0.1)) as n:
            task = n.listen(Inbox())
            started = time.monotonic()
            assert await n.publish("keys") is False
            assert time.monotonic() - started < 0.5
            await asyncio.sleep(0.3)
            assert not task.done()
        assert task.cancelled()

    asyncio.run(main())
