"""The demo's key and the text it prints: everything needed to try the gateway at once."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import click

from keystead.control.keys import KeyService
from keystead.control.teams import TeamService
from keystead.errors import GatewayError
from keystead.keys.format import parse_key
from keystead.runtime import Runtime

__all__ = ["announce", "ensure_demo_key"]


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
    saved.write_text(created.text + "\n", encoding="ascii")
    saved.chmod(0o600)
    return created.text


def _command_name() -> str:
    """How to call keystead from the user's shell (`keystead`, or its path when not on PATH)."""
    if shutil.which("keystead"):
        return "keystead"
    script = Path(sys.argv[0])
    if script.name == "keystead" and script.exists():
        return os.path.relpath(script) if script.is_relative_to(Path.cwd()) else str(script)
    return "python -m keystead"


def announce(key: str, base_url: str, admin_token: str, directory: Path) -> None:
    command = _command_name()
    click.echo(f"""
keystead demo is running at {base_url} (mock provider, no network needed)

  demo key     {key}
  admin token  {admin_token}
  data         {directory}

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

A route instead of a model: "support-default" spreads calls over two deployments (one fails a
third of the time and is retried on the other: see x-keystead-attempts) and answers a repeated
question from its cache (x-keystead-cache: hit):

  curl -i {base_url}/v1/chat/completions \
    -H "Authorization: Bearer {key}" \
    -H "Content-Type: application/json" \
    -d '{{"model": "support-default", "messages": [{{"role": "user", "content": "Hi!"}}]}}'

See what it cost:  {command} --server {base_url} --admin-token {admin_token} usage
The routes:        {command} --server {base_url} --admin-token {admin_token} routes
Press Ctrl-C to stop.
""", err=False)
