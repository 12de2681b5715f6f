"""A webhook receiver on a thread, for tests of what the gateway posts (alerts, incidents):
it keeps each JSON body it accepts, and a check can refuse a request (the HMAC signature)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (headers, raw body) -> accepted?
Check = Callable[[Any, bytes], bool]


@dataclass
class Receiver:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def webhook_receiver(path: str = "/hook", check: Check | None = None) -> Iterator[Receiver]:
    """Yields a Receiver whose `url` ends in `path`; answers 200 (or 401 when `check` says no)."""
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            accepted = check is None or check(self.headers, body)
            if accepted:
                receiver.received.append(json.loads(body))
            self.send_response(200 if accepted else 401)
            self.end_headers()
            self.wfile.write(b"ok" if accepted else b"no")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
