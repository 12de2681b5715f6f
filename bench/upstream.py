"""A zero-latency fake provider that is not the thing being measured.

nginx (Debian's nginx-light) answers every chat completion with the same OpenAI response, from
memory, in C. If nginx is missing, the built-in mock upstream stands in (slower: the table says
which one ran).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from bench.procs import Proc, free_port, wait_http

CHAT_RESPONSE = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the bench.",
                                         "refusal": None, "annotations": []},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0,
                                            "rejected_prediction_tokens": 0}},
}


def _stream_body(chunks: int = 20) -> str:
    # nginx's `return` takes at most ~4 KB, so the chunks carry only what the schema requires.
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4o-mini"}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "logprobs": None, "finish_reason": None}], "usage": None}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": f" word{i}"},
                                      "finish_reason": None}], "usage": None}
               for i in range(chunks)]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "stop"}], "usage": None})
    events.append({**base, "choices": [], "usage": {"prompt_tokens": 12,
                                                    "completion_tokens": chunks,
                                                    "total_tokens": 12 + chunks}})
    return "".join(f"data: {json.dumps(e, separators=(',', ':'))}\n\n" for e in events) + \
        "data: [DONE]\n\n"


STREAM_CHUNKS = 16


def _nginx_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


def start_upstream(cpu: str | None) -> tuple[Proc, str, str]:
    """Start the fake provider; returns (process, base_url for chat, kind)."""
    port = free_port()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if nginx:
        root = Path(tempfile.mkdtemp(prefix="keystead-bench-nginx-"))
        chat = _nginx_escape(json.dumps(CHAT_RESPONSE, separators=(",", ":")))
        stream = _nginx_escape(_stream_body(STREAM_CHUNKS))
        temp = "".join(f"{name}_temp_path {root}/{name};\n  "
                       for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (root / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  {temp}
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port};
    location = /v1/chat/completions {{
      default_type application/json;
      return 200 '{chat}';
    }}
    location = /stream/v1/chat/completions {{
      default_type text/event-stream;
      return 200 '{stream}';
    }}
    # An OTLP/HTTP traces sink for the tracing target: an empty body is an empty
    # ExportTraceServiceResponse (the exporter reads only the status).
    location = /v1/traces {{
      default_type application/x-protobuf;
      return 200 '';
    }}
  }}
}}
""")
        command = [nginx, "-c", str(root / "nginx.conf"), "-p", str(root)]
        kind = "nginx"
    else:
        import sys

        command = [sys.executable, "-m", "keystead", "mock-upstream", "--port", str(port)]
        kind = "keystead mock-upstream (nginx not installed)"
    proc = Proc.start("upstream", command, cpu=cpu)
    wait_http(f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
              body=b'{"model":"gpt-4o-mini","messages":[]}')
    return proc, f"http://127.0.0.1:{port}", kind


def nginx_available() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


__all__ = ["CHAT_RESPONSE", "STREAM_CHUNKS", "nginx_available", "start_upstream"]
