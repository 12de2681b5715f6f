"""Gather the request path's calls to Redis into one script call per round trip.

Admits and settlements that are asked for while no call is on its way are sent together at the
start of the next event-loop turn (every task that was ready in this turn had its say); those
asked for while a call is on its way wait for it to return and then go together, in one call.
One call is on its way at a time, so under load each call carries every operation that came
up during the previous round trip, and alone (one request at a time) an operation goes at once.

Nothing is answered before Redis applied it: each caller awaits its own operation's reply, so a
settlement is in Redis before `settle` returns, as it was when each had its own call. What
gathering adds is the wait for the call on its way (one round trip, at most the call's
timeout). Operations in flight together are concurrent, so any order of them is one they could
have had with a call each; settlements go first, so an admit sees the capacity they free.
An admit whose caller left before its call went out is dropped (nobody would settle it); a
settlement whose caller left is sent all the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

__all__ = ["Coalescer", "Operation"]


class Operation(NamedTuple):
    kind: bytes  # b"a" admit, b"s" settle, b"p" ping
    keys: Sequence[str]
    args: Sequence[str | int]
    reply: asyncio.Future[Any]


class Coalescer:
    """Operations waiting for the next call, and the task that sends them (one call at a time)."""

    def __init__(self, send: Callable[[list[Operation]], Awaitable[list[Any]]],
                 max_ops: int = 128):
        self._send = send
        self._max_ops = max_ops  # per call: Redis serves nobody else while a script runs
        self._settles: list[Operation] = []
        self._admits: list[Operation] = []
        self._sender: asyncio.Task[None] | None = None
        self.calls = 0  # script calls made, and the operations they carried (bench, tests)
        self.operations = 0

    @property
    def waiting(self) -> int:
        return len(self._settles) + len(self._admits)

    def submit(self, kind: bytes, keys: Sequence[str], args: Sequence[str | int],
               ) -> asyncio.Future[Any]:
        """Queue an operation; the future gets its reply, or the error of its call, or its own
        error (`send` answers an exception for an operation that failed alone)."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        (self._settles if kind == b"s" else self._admits).append(
            Operation(kind, keys, args, reply))
        if self._sender is None:
            # A task's first step runs on the next loop turn: what this turn asks for joins.
            self._sender = loop.create_task(self._run())
        return reply

    def _take(self) -> list[Operation]:
        # An admit (or ping) whose caller left is not sent: nobody would settle its holds.
        # A settlement is sent all the same: it gives back what its request held.
        self._admits = [op for op in self._admits if not op.reply.done()]
        batch = self._settles[:self._max_ops]
        del self._settles[:len(batch)]
        room = self._max_ops - len(batch)
        if room > 0:
            batch += self._admits[:room]
            del self._admits[:room]
        return batch

    async def _run(self) -> None:
        batch: list[Operation] = []
        try:
            while self._settles or self._admits:
                batch = self._take()
                if not batch:  # (only admits whose callers left)
                    break
                self.calls += 1
                self.operations += len(batch)
                try:
                    replies = await self._send(batch)
                except Exception as exc:  # the same error for each, as if each had made the call
                    for op in batch:
                        if not op.reply.done():
                            op.reply.set_exception(exc)
                    continue
                if len(replies) != len(batch):  # (a bug) which reply is whose is unknown
                    replies = [RuntimeError(f"{len(replies)} replies to a call of "
                                            f"{len(batch)} operations")] * len(batch)
                for op, reply in zip(batch, replies, strict=True):
                    if op.reply.done():  # (a caller that was cancelled: applied all the same)
                        continue
                    if isinstance(reply, Exception):  # that operation's own error
                        op.reply.set_exception(reply)
                    else:
                        op.reply.set_result(reply)
        except BaseException:  # cancelled (the loop is closing): nobody waits forever
            for op in batch + self._settles + self._admits:
                op.reply.cancel()
            self._settles.clear()
            self._admits.clear()
            raise
        finally:
            self._sender = None

    async def drain(self) -> None:
        """Wait until every operation queued so far was sent and answered (shutdown)."""
        while self._sender is not None:
            await asyncio.shield(self._sender)
