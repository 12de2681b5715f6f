"""Portkey's open-source AI gateway as the Node peer: pinned, installed from the npm registry into
its own directory, started with its own command, proxying to the same fake upstream.

The gateway (`@portkey-ai/gateway`, Hono on @hono/node-server) keeps no provider table: every
request names its provider and, for a self-hosted or fake one, its base URL in headers
(`x-portkey-provider: openai`, `x-portkey-custom-host: <upstream>/v1`), and its bearer key is
passed on to the provider as the provider's key. It has no key check of its own in the
open-source build, so it does less per request than keystead (no key table, no limits, no
ledger). 127.0.0.1 is on its default list of trusted custom hosts; nothing else is reached.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.load import CHAT_BODY
from bench.procs import Proc, free_port, wait_http
from bench.targets import Target

PORTKEY_VERSION = "1.15.2"
PACKAGE = "@portkey-ai/gateway"
UPSTREAM_KEY = "sk-bench-upstream"  # the bearer Portkey forwards to the fake provider
CACHE = Path(__file__).parent / ".cache"


def portkey_dir(version: str = PORTKEY_VERSION) -> Path:
    """A directory with `@portkey-ai/gateway@version` in node_modules, installed on first use
    (~20 s, ~30 MB). Install scripts are not run: its only one, `patch-package`, patches
    nothing in the published package."""
    root = CACHE / f"portkey-{version}"
    done = root / ".installed"
    if done.exists():
        return root
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("Portkey's gateway needs Node.js (>= 18) and npm on PATH")
    shutil.rmtree(root, ignore_errors=True)  # left by an install that did not finish
    root.mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"private": True}) + "\n")
    print(f"installing {PACKAGE}@{version} into {root} ...", file=sys.stderr)
    install = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--omit=dev",
                              "--ignore-scripts", "--save-exact", f"{PACKAGE}@{version}"],
                             cwd=root, capture_output=True, text=True)
    if install.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        why = [line for line in (install.stderr + install.stdout).splitlines() if line.strip()]
        raise RuntimeError(f"npm could not install {PACKAGE}@{version} "
                           f"(exit {install.returncode}):\n" + "\n".join(why[-15:]))
    done.write_text(f"{PACKAGE}@{version}\n")
    return root


def start_portkey(upstream_base_url: str, *, cpu: str | None) -> Target:
    """`gateway --headless --port=N` (the package's own bin), one Node process pinned to `cpu`.

    NODE_ENV=production as a deployment would run it: no log console, no UI routes."""
    root = portkey_dir()
    port = free_port()
    command = [str(root / "node_modules" / ".bin" / "gateway"), "--headless", f"--port={port}"]
    headers = {"x-portkey-provider": "openai",
               "x-portkey-custom-host": f"{upstream_base_url}/v1"}
    started = time.perf_counter()
    proc = Proc.start("portkey", command, cpu=cpu, cwd=str(root),
                      env={"NODE_ENV": "production", "PORT": str(port)})
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        wait_http(url, method="POST", body=CHAT_BODY.encode(),
                  headers={"authorization": f"Bearer {UPSTREAM_KEY}", **headers}, timeout=60.0)
    except TimeoutError:
        proc.stop()
        raise RuntimeError(f"Portkey's gateway did not answer 200 at {url} "
                           f"(exit code {proc.popen.returncode}); see {proc.log}") from None
    return Target(f"portkey gateway {PORTKEY_VERSION} (node {_node_version()})", url,
                  UPSTREAM_KEY, proc, round(time.perf_counter() - started, 3),
                  headers=headers)


def _node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "?"
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()


__all__ = ["PORTKEY_VERSION", "portkey_dir", "start_portkey"]
