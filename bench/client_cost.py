"""What an upstream HTTP client costs per request, alone: CPU seconds of the client process.

nginx (bench/upstream.py) answers the chat completion from memory on CPU 1; each client runs in
its own process on CPU 0 with uvloop, sends `--requests` POSTs with the bench's chat body over
`--concurrency` keep-alive connections, reads each answer whole, and reports the CPU its process
used (all threads: pyreqwest's Tokio runtime counts too) per request. Rounds alternate the
clients, so the machine's drift is spread over all of them.

    python -m bench.client_cost [--requests 20000] [--concurrency 32] [--rounds 3]
        [--clients aiohttp,pyreqwest,h1] [--stream]

`--stream` fetches the 20-event SSE answer instead and reads it chunk by chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.load import CHAT_BODY
from bench.upstream import start_upstream

CLIENTS = ("aiohttp", "pyreqwest", "h1")
HEADERS = {"authorization": "Bearer sk-bench", "content-type": "application/json",
           "accept": "application/json"}
Fetch = Callable[[], Awaitable[int]]


async def _aiohttp(url: str, body: bytes, stream: bool) -> tuple[Fetch, Any]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30), auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"))
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)

    async def fetch() -> int:
        response = await session.request("POST", url, headers=HEADERS, data=body,
                                         timeout=timeout, allow_redirects=False)
        if stream:
            size = 0
            async for chunk in response.content.iter_any():
                size += len(chunk)
            response.release()
            return size
        data = await response.read()
        response.release()
        return len(data)

    return fetch, session.close


async def _pyreqwest(url: str, body: bytes, stream: bool) -> tuple[Fetch, Any]:
    from datetime import timedelta

    from pyreqwest.client import ClientBuilder

    client = ClientBuilder().max_connections(None).follow_redirects(False).gzip(False) \
        .connect_timeout(timedelta(seconds=10)).read_timeout(timedelta(seconds=60)).build()

    async def fetch() -> int:
        if stream:
            size = 0
            async with client.post(url).headers(HEADERS).body_bytes(body) \
                    .build_streamed() as response:
                reader = response.body_reader
                while (chunk := await reader.read_chunk()) is not None:
                    size += len(bytes(chunk))
            return size
        response = await client.post(url).headers(HEADERS).body_bytes(body).build().send()
        return len(bytes(await response.bytes()))

    return fetch, client.close


async def _h1(url: str, body: bytes, stream: bool) -> tuple[Fetch, Any]:
    from keystead.providers.h1 import H1Client

    client = H1Client()

    async def fetch() -> int:
        response = await client.request("POST", url, dict(HEADERS), body, read_timeout=60,
                                        what="bench")
        if stream:
            size = 0
            async for chunk in response.iter_chunks():
                size += len(chunk)
            response.release()
            return size
        return len(await response.read())

    return fetch, client.close


async def _measure(client: str, url: str, requests: int, concurrency: int,
                   stream: bool) -> dict[str, float]:
    make = {"aiohttp": _aiohttp, "pyreqwest": _pyreqwest, "h1": _h1}[client]
    fetch, close = await make(url, CHAT_BODY.encode(), stream)
    for _ in range(200):  # warm: connections open, code paths hot
        await fetch()
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await fetch()

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    wall0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0
    await close()
    return {"us_cpu_per_request": cpu / requests * 1e6, "rps": requests / wall}


def _child(args: argparse.Namespace) -> None:
    import uvloop

    result = uvloop.run(_measure(args.child, args.url, args.requests, args.concurrency,
                                 args.stream))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    proc, base, kind = start_upstream(cpu="1")
    url = base + ("/stream/v1/chat/completions" if args.stream else "/v1/chat/completions")
    results: dict[str, list[dict[str, float]]] = {}
    try:
        for round_ in range(args.rounds):
            order = args.clients.split(",")
            if round_ % 2:
                order.reverse()
            for client in order:
                out = subprocess.run(
                    ["taskset", "-c", "0", sys.executable, "-m", "bench.client_cost",
                     "--child", client, "--url", url, "--requests", str(args.requests),
                     "--concurrency", str(args.concurrency)]
                    + (["--stream"] if args.stream else []),
                    check=True, capture_output=True, text=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault(client, []).append(result)
                print(f"round {round_ + 1} {client:10} {result['us_cpu_per_request']:7.1f} "
                      f"us CPU/request  {result['rps']:8.0f} rps", flush=True)
    finally:
        proc.stop()
    print(f"\nupstream: {kind}; {args.requests} requests x {args.rounds} rounds, "
          f"{args.concurrency} connections{', streamed' if args.stream else ''}")
    for client, runs in results.items():
        cpu = statistics.median(r["us_cpu_per_request"] for r in runs)
        rps = statistics.median(r["rps"] for r in runs)
        print(f"{client:10} median {cpu:7.1f} us CPU/request  {rps:8.0f} rps")


if __name__ == "__main__":
    main()
