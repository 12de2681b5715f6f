"""A fake provider that streams SSE events one at a time: one write per event, a pause between.

nginx (bench/upstream.py) sends a whole stream in one write, so a gateway reads it in one or two
reads and events per second measures streams. Real providers send a token or a few per event,
each in its own TCP segment; the gateway then pays its per-event cost (a read, the SSE
framing, its checks, a write) once per event. This server does that: raw asyncio (uvloop),
HTTP/1.1 keep-alive, chunked, one `transport.write` per event, `--delay-ms` between events
(0: only a yield to the loop).

Every POST gets the same stream: the role chunk, `--events` content deltas, the finish chunk,
the usage chunk (`"choices":[]`, as OpenAI sends with include_usage), `data: [DONE]`.

    python -m bench.sse_upstream --port P [--events 100] [--delay-ms 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json

_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
         b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")


def stream_events(count: int) -> list[bytes]:
    """The stream's events, each `data: ...\\n\\n`, as an OpenAI chat stream sends them."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_bench"}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "logprobs": None, "finish_reason": None}], "usage": None}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": f" word{i}"},
                                     "logprobs": None, "finish_reason": None}], "usage": None}
               for i in range(count)]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "stop"}], "usage": None})
    chunks.append({**base, "choices": [], "usage": {
        "prompt_tokens": 12, "completion_tokens": count, "total_tokens": 12 + count,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0}}})
    events = [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n"
              for c in chunks]
    return [*events, b"data: [DONE]\n\n"]


class _Stream(asyncio.Protocol):
    def __init__(self, chunks: list[bytes], delay: float) -> None:
        self.chunks = chunks
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end == -1 or self.task is not None:
            return
        length = 0
        for line in self.buffer[:head_end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) < head_end + 4 + length:
            return
        self.buffer = self.buffer[head_end + 4 + length:]
        self.task = asyncio.get_running_loop().create_task(self._answer())

    async def _answer(self) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(_HEAD)
        for chunk in self.chunks:
            await asyncio.sleep(self.delay)
            if transport.is_closing():
                return
            transport.write(chunk)  # one write, one event
        transport.write(b"0\r\n\r\n")
        self.task = None
        if self.buffer:  # a pipelined request
            self.data_received(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None:
            self.task.cancel()


async def serve(port: int, events: int, delay: float) -> None:
    chunks = [b"%x\r\n%s\r\n" % (len(e), e) for e in stream_events(events)]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Stream(chunks, delay), "127.0.0.1", port,
                                      backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sse_upstream", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=100, help="content deltas per stream")
    parser.add_argument("--delay-ms", type=float, default=1.0)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port, args.events, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
