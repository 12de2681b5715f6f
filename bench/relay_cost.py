"""keystead's own work per streamed event, in process: `relay_stream` over an OpenAI stream that
arrives one event per upstream read, with a send that does nothing.

The upstream reads are an async generator (as aiohttp's `iter_chunks` is) and the send an
awaited no-op coroutine, so the figure is the relay's own per-event cost: the SSE framing,
the usage scan, the capture, the ASGI message, and the awaits between. The server's and the
client's costs (a read, a write per event) come on top: `python -m bench.stream_events`.

    python -m bench.relay_cost [--events 100] [--streams 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from bench.sse_upstream import stream_events
from keystead.pipeline.context import RequestContext
from keystead.pipeline.relay import relay_stream
from keystead.providers.base import Endpoint


class _Upstream:
    status = 200
    headers: dict[str, str] = {}

    def abort(self) -> None:
        pass


async def _chunks(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


async def _send(message: dict[str, Any]) -> None:
    pass


async def _streams(events: list[bytes], streams: int) -> float:
    gone = asyncio.Event()
    started = time.perf_counter()
    for _ in range(streams):
        ctx = RequestContext("req", Endpoint.CHAT, None, None, None)
        ctx.client_asked_usage = True
        await relay_stream(ctx, _Upstream(), events[0], _chunks(events[1:]),  # type: ignore[arg-type]
                           _send, [], gone, lambda: b": cost 0\n\n")
        assert ctx.usage is not None
    return (time.perf_counter() - started) / (streams * len(events)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_cost", description=__doc__)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import uvloop

    events = stream_events(args.events)
    best = min(uvloop.run(_streams(events, args.streams)) for _ in range(args.rounds))
    print(f"relay_stream: {best:.3f} us per event (best of {args.rounds}, {len(events)} events "
          f"per stream, one per read)")


if __name__ == "__main__":
    main()
