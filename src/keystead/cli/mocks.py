"""`keystead mock-upstream` and `keystead mock-anthropic`: the built-in mock providers (OpenAI's
and Anthropic's wire formats) on a port of their own, for a gateway, an SDK or a test to call.

Each binds its port before it says where it listens, as `keystead demo` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

import click

__all__ = ["COMMANDS"]


@click.command("mock-upstream")
@click.option("--port", type=click.IntRange(0, 65535), default=9090, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--latency-ms", type=float, default=0.0, help="Delay before each answer.")
@click.option("--chunk-delay-ms", type=float, default=0.0, help="Delay between stream chunks.")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Share of requests that fail with --failure-status.")
@click.option("--failure-status", type=int, default=500)
@click.option("--api-key", help="Require this bearer key (to test key injection).")
@click.option("--seed", type=int, help="Seed for the failure dice.")
@click.option("--faults", metavar="SCRIPT",
              help="A fault script for every request, e.g. '429:retry_ms=500,503,ok' "
                   "(docs/testing-faults.md).")
def mock_upstream(port: int, host: str, latency_ms: float, chunk_delay_ms: float,
                  failure_rate: float, failure_status: int, api_key: str | None,
                  seed: int | None, faults: str | None) -> None:
    """Serve the built-in mock provider on its own (OpenAI wire format)."""
    from keystead.cli.listen import listen
    from keystead.mocks.faults import FaultSpecError
    from keystead.mocks.openai_upstream import MockSettings, serve_mock

    try:
        settings = MockSettings(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms,
                                failure_rate=failure_rate, failure_status=failure_status,
                                seed=seed, api_key=api_key, faults=faults)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    sock = listen(host, port)
    click.echo(f"mock upstream (OpenAI) on http://{_shown(host)}:{sock.getsockname()[1]}/v1",
               err=True)
    _serve(serve_mock(host, port, settings, sock))


@click.command("mock-anthropic")
@click.option("--port", type=click.IntRange(0, 65535), default=9091, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0,
              help="Delay before each answer.")
@click.option("--chunk-delay-ms", type=click.FloatRange(0), default=0.0,
              help="Delay between stream events.")
@click.option("--api-key", help="Require this key (x-api-key or bearer), to test key injection.")
@click.option("--models", default="claude-haiku-4-5,claude-sonnet-4-6,claude-opus-4-6",
              show_default=True, help="The models it answers to, comma-separated ('' for any).")
@click.option("--status", type=click.IntRange(400, 599),
              help="Answer every message with this error (529: an overloaded deployment).")
def mock_anthropic(port: int, host: str, latency_ms: float, chunk_delay_ms: float,
                   api_key: str | None, models: str, status: int | None) -> None:
    """Serve the mock Anthropic provider on its own (Messages API wire format).

    Point Anthropic's SDK at it without /v1 (the SDK adds it), or a keystead provider of
    `type: anthropic` with `base_url` http://HOST:PORT. Prompts steer it with [[mock:...]]
    directives (src/keystead/mocks/anthropic_upstream.py lists them).
    """
    from keystead.cli.listen import listen
    from keystead.mocks.anthropic_upstream import AnthropicMockSettings, serve_anthropic_mock

    names = tuple(name.strip() for name in models.split(",") if name.strip())
    settings = AnthropicMockSettings(api_key=api_key, models=names, latency_ms=latency_ms,
                                     chunk_delay_ms=chunk_delay_ms, status=status)
    sock = listen(host, port)
    click.echo(f"mock upstream (Anthropic) on http://{_shown(host)}:{sock.getsockname()[1]}",
               err=True)
    _serve(serve_anthropic_mock(host, port, settings, sock))


def _serve(main: Coroutine[Any, Any, None]) -> None:
    """Serve until Ctrl-C or SIGTERM, either a clean exit (0): uvicorn drains, then re-raises
    the signal it caught, which would otherwise end the process by that signal."""

    def stopped(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stopped)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main)


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


COMMANDS = [mock_upstream, mock_anthropic]
