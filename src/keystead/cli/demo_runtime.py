"""The demo's data directory, its key, and the text it prints: everything needed to try the
gateway at once."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import click
import uvicorn

from keystead.control.keys import KeyService
from keystead.control.teams import TeamService
from keystead.errors import GatewayError
from keystead.keys.format import parse_key
from keystead.private_files import write_private
from keystead.runtime import Runtime

__all__ = ["DATABASE", "DemoServer", "announce", "ensure_demo_key", "lock_directory",
           "prepare_directory"]

DATABASE = "keystead-demo.db"
# Every file the demo writes in its directory; `--fresh` removes these and nothing else, so a
# `--dir` that holds other things keeps them.
DEMO_FILES = ("master.key", "admin.token", "demo.key", DATABASE, f"{DATABASE}-wal",
              f"{DATABASE}-shm", f"{DATABASE}-journal")


def lock_directory(directory: Path) -> int:
    """Hold the demo's directory for this process (the lock goes with it): a second demo on the
    same directory would remove the first one's database from under it. Returns the lock's fd."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / "demo.lock", os.O_RDWR | os.O_CREAT, 0o600)
    if sys.platform == "win32":
        return fd
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise click.ClickException(
            f"another keystead demo is using {directory}: stop it, or give this one a "
            "directory of its own with --dir") from None
    return fd


def prepare_directory(directory: Path, fresh: bool) -> str:
    """Make the demo's directory ready and say what it starts from (printed beside it).

    Fresh (the default): the last run's files are removed (its database, usage rows, keys and
    admin token), so every run starts as a newcomer's first. Kept (`--keep`): they are reused;
    any of them readable by others (written by an older keystead) is made private.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    present = [directory / name for name in DEMO_FILES if (directory / name).exists()]
    if fresh:
        for path in present:
            path.unlink()
        return "fresh: a new database, key and admin token (--keep reuses them next time)"
    if not present:
        return "new: nothing from a last run to keep"
    for path in present:
        if not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)  # an existing file from an older keystead, not a new secret
    return "kept from the last run: its keys, admin token and usage rows (--fresh starts over)"


class DemoServer(uvicorn.Server):
    """uvicorn on the socket the demo bound up front, printing the demo's text once it listens
    (after the lifespan made the demo key, which the text shows)."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket, ready: Callable[[], None]):
        super().__init__(config)
        self._sock, self._ready = sock, ready

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        super().run(sockets or [self._sock])

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._ready()


async def ensure_demo_key(runtime: Runtime, directory: Path) -> str:
    """The demo key from the last run if it still works, else a new one.

    Keys are stored only as hashes, so the demo keeps its own key's text in its directory
    (mode 600). This is a demo convenience; real keys are never written anywhere by keystead.
    """
    saved = directory / "demo.key"
    if saved.exists():
        text = saved.read_text(encoding="ascii").strip()
        # Revoked, expired or from another database: issue a new one.
        with contextlib.suppress(GatewayError):
            if parse_key(text) is not None:
                runtime.keys.identify(b"Bearer " + text.encode())
                return text
    # A key's team must exist; the demo's team is made on the first run (or after a reset).
    if await runtime.store.get_team("demo") is None:
        await TeamService(runtime).create("demo", description="created by keystead demo",
                                          owner="you")
    names = {k.name for k in await runtime.store.list_keys()}
    number = 1
    while f"dev-demo-app-{number:02d}" in names:
        number += 1
    created = await KeyService(runtime).create(
        f"dev-demo-app-{number:02d}", team="demo", description="created by keystead demo",
        owner="you")
    write_private(saved, created.text + "\n", exclusive=False)  # replaces a stale key
    return created.text


def _command_name() -> str:
    """How to call keystead from the user's shell, as it was called: `keystead` when that is
    on PATH, else the script's path, else this Python with `-m keystead`."""
    if shutil.which("keystead"):
        return "keystead"
    script = Path(sys.argv[0])
    if script.name == "keystead" and script.exists():
        return shlex.quote(_short(script))
    return f"{shlex.quote(_short(Path(sys.executable)))} -m keystead"


def _short(path: Path) -> str:
    """`path` relative to the working directory when it is below it (`.venv/bin/keystead`)."""
    absolute = path.absolute()
    return os.path.relpath(absolute) if absolute.is_relative_to(Path.cwd()) else str(absolute)


def announce(key: str, base_url: str, admin_token: str, directory: Path, data: str) -> None:
    """The demo's text, printed once its port listens. Every command in it works when pasted
    (tests/e2e/test_demo.py runs them): shell lines continue with a backslash, Python snippets
    start at the first column."""
    command = _command_name()
    admin = f"{command} --server {base_url} --admin-token {admin_token}"
    click.echo(f"""
keystead demo is listening on {base_url} (mock providers: no account, no network)

  demo key     {key}
  admin token  {admin_token}
  data         {directory}
               {data}

Try it with curl:

  curl {base_url}/v1/chat/completions \\
    -H "Authorization: Bearer {key}" \\
    -H "Content-Type: application/json" \\
    -H "x-keystead-feature: demo" \\
    -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

Or with the official OpenAI SDK (pip install openai):

from openai import OpenAI
client = OpenAI(base_url="{base_url}/v1", api_key="{key}")
reply = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{{"role": "user", "content": "Hello!"}}])
print(reply.choices[0].message.content)

Anthropic's Messages API too, for code on Anthropic's SDK (a mock Claude answers):

  curl {base_url}/v1/messages \\
    -H "x-api-key: {key}" \\
    -H "anthropic-version: 2023-06-01" \\
    -H "Content-Type: application/json" \\
    -d '{{"model": "claude-haiku-4-5", "max_tokens": 200,
         "messages": [{{"role": "user", "content": "Hello!"}}]}}'

from anthropic import Anthropic  # pip install anthropic; base_url without /v1: the SDK adds it
client = Anthropic(base_url="{base_url}", api_key="{key}")
message = client.messages.create(
    model="claude-haiku-4-5", max_tokens=200, messages=[{{"role": "user", "content": "Hello!"}}])
print(message.content[0].text)

Agent frameworks (OpenAI Agents SDK, pydantic-ai, Vercel AI SDK) work with base URL
{base_url}/v1: the mock calls the tools it is offered and follows JSON
schemas, on chat completions and the Responses API.

A route instead of a model: "support-default" spreads calls over two deployments (one fails a
third of the time and is retried on the other: see x-keystead-attempts) and answers a repeated
question from its cache (x-keystead-cache: hit):

  curl -i {base_url}/v1/chat/completions \\
    -H "Authorization: Bearer {key}" \\
    -H "Content-Type: application/json" \\
    -d '{{"model": "support-default", "messages": [{{"role": "user", "content": "Hi!"}}]}}'

See what it cost:  {admin} usage
The routes:        {admin} routes
Press Ctrl-C to stop.
""")
