"""`keystead mock-upstream`: the built-in mock provider on a port of its own."""

from __future__ import annotations

import asyncio

import click

__all__ = ["COMMANDS"]


@click.command("mock-upstream")
@click.option("--port", type=int, default=9090, show_default=True)
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
    from keystead.mocks.faults import FaultSpecError
    from keystead.mocks.openai_upstream import MockSettings, serve_mock

    try:
        settings = MockSettings(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms,
                                failure_rate=failure_rate, failure_status=failure_status,
                                seed=seed, api_key=api_key, faults=faults)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    click.echo(f"mock upstream on http://{host}:{port}/v1", err=True)
    asyncio.run(serve_mock(host, port, settings))


COMMANDS = [mock_upstream]
