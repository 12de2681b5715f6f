"""A listening socket, bound before a command prints anything or touches its data: a busy port
is one line that names `--port` and exit code 1, not a traceback after the text that said the
server was running (`keystead demo`, `mock-upstream`, `mock-anthropic`)."""

from __future__ import annotations

import errno
import socket

import click

__all__ = ["listen"]


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port and listening (port 0: any free port; read it back with
    `getsockname`). uvicorn serves on it as given (`Server.run(sockets=[sock])`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except socket.gaierror as exc:
        raise click.ClickException(
            f"cannot listen on {host!r}: {exc.strerror}; name an address of this machine "
            "with --host") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} on {host} is already in use (another keystead?): stop it, or "
                f"pick another port with --port, e.g. --port {port + 1 if port < 65535 else 0}"
            ) from None
        if exc.errno == errno.EACCES:
            raise click.ClickException(
                f"port {port} needs privileges on this machine: pick one above 1023 with "
                "--port") from None
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --host or "
            "--port") from None
