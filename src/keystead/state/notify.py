"""Change notices between processes over Redis pub/sub.

A process that changed keys, teams or providers publishes the name of what changed; the others
reload it at once instead of at their next poll of the store ("config": every process re-reads
its own config file). Pub/sub keeps nothing: a notice sent while a listener is disconnected is
lost, so the store's change counters stay the ground truth and this only makes the reload
prompt.

Channel: `{prefix}changes`; a message is "<origin> <name>", origin being the publishing
notifier, whose own messages its listener skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

__all__ = ["ChangeNotifier"]

log = logging.getLogger("keystead.notify")


class ChangeNotifier:
    """Publishes change notices and listens to the other processes' ones."""

    def __init__(self, url: str, prefix: str = "keystead:", *, timeout_s: float = 0.5,
                 connect_timeout_s: float = 1.0, backoff_s: tuple[float, float] = (0.1, 10.0),
                 idle_s: float = 15.0):
        self.channel = prefix + "changes"
        self.origin = uuid.uuid4().hex
        self._backoff = backoff_s  # first and longest wait before reconnecting
        self._idle_s = idle_s  # silence after which the listener pings Redis
        # A notice sent twice costs a reload, so a connection found dead is retried once.
        self._publisher = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
        # No socket timeout on the subscriber: it waits for messages; the pings find dead peers.
        # No error is "retryable" either: redis-py would reconnect and resubscribe even when
        # giving up, only for _listen to drop that connection for a new one; a notice published
        # in between would be lost. Its name lets operators (and tests) find it in CLIENT LIST.
        self._subscriber = aioredis.Redis.from_url(
            url, socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 0, supported_errors=()),
            client_name=f"keystead-notify-{self.origin}")
        self._task: asyncio.Task[None] | None = None

    async def publish(self, name: str) -> bool:
        """Tell the other processes that `name` changed. False (and a warning) when Redis is out
        of reach: the change is in the store already, the others find it at their next poll."""
        try:
            await self._publisher.publish(self.channel, f"{self.origin} {name}")
        except (RedisError, OSError) as exc:
            log.warning("could not publish the change of %s: %s", name, exc)
            return False
        return True

    def listen(self, callback: Callable[[str], Awaitable[None]]) -> asyncio.Task[None]:
        """Call `callback(name)` for every change another process publishes, from a background
        task that outlives Redis outages (it reconnects with backoff) and callback errors."""
        if self._task is not None:
            raise RuntimeError("this notifier is listening already")
        self._task = asyncio.get_running_loop().create_task(
            self._listen(callback), name="keystead-change-listener")
        return self._task

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._publisher.aclose(close_connection_pool=True)
        await self._subscriber.aclose(close_connection_pool=True)

    async def _listen(self, callback: Callable[[str], Awaitable[None]]) -> None:
        delay = self._backoff[0]
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                delay = self._backoff[0]  # connected: the next outage starts with a short wait
                await self._receive(pubsub, callback)
            except (RedisError, OSError) as exc:
                log.warning("change notices: no Redis (%s); reconnecting", exc)
            except Exception:  # a bug here must not silence notices for good
                log.exception("change notices: listener failed; reconnecting")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            # Jitter, so that replicas do not all reconnect in the same instant.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._backoff[1])

    async def _receive(self, pubsub: PubSub, callback: Callable[[str], Awaitable[None]]) -> None:
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self._idle_s)
            if message is None:
                if pinged:  # nothing back, not even the pong: the connection is dead
                    raise RedisConnectionError(f"no answer from Redis in {self._idle_s}s")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            if message["type"] != "message":
                continue
            origin, _, name = bytes(message["data"]).decode("utf-8", "replace").partition(" ")
            if origin == self.origin:
                continue
            try:
                await callback(name)
            except Exception:
                log.exception("change notices: the handler of %r failed", name)
