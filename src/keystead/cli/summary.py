"""What `keystead serve` says on stderr once its runtime is up, before it accepts requests: where
the API, the admin API and the docs are, which provider answers which models (and which names
another provider shadows), the routes, the store and the counters. A dozen lines: the answer to
"is this gateway wired the way I think?" without reading the config and the store.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from keystead.config.model import Config
    from keystead.runtime import Runtime

__all__ = ["on_ready", "render"]

_SOURCES = {"config": "config file", "store": "added at run time"}
_MAX_MODELS = 8


def on_ready(host: str, port: int) -> Callable[[Runtime], Awaitable[None]]:
    """The `create_app(on_ready=...)` hook that prints the summary."""

    async def print_summary(runtime: Runtime) -> None:
        try:
            text = render(runtime, host, port)
        except Exception:  # a report must never keep the gateway from starting
            logging.getLogger("keystead.server").exception("the start-up summary failed")
            return
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    return print_summary


def render(runtime: Runtime, host: str, port: int) -> str:
    from keystead import __version__
    from keystead.providers.claims import claims_of, describe, shadows

    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    loaded, config = runtime.loaded, runtime.config
    where = f" (config {loaded.path.resolve()})" if loaded.path else " (embedded defaults)"
    lines = [f"keystead {__version__} on {base}{where}",
             f"  API        {base}/v1: chat/completions, embeddings, responses, models; "
             "Anthropic's messages"]
    token = "token: admin.token" if config.admin.token else \
        "off: no admin.token (set KEYSTEAD_ADMIN_TOKEN)"
    lines.append(f"  admin      {base}/admin ({token}); its docs {base}/admin/docs")
    lines.append(f"  signals    {_signals(config, base, host)}")

    statuses = list(runtime.provider_status.values())
    label = "providers"
    for status in statuses:
        spec = status.spec
        head = f"{spec.name} ({spec.type}, {_SOURCES.get(spec.source, spec.source)})"
        if status.error is not None:
            body = f"UNUSABLE: {status.error}"
        elif not spec.models:
            body = "serves no model: give it models (docs/providers.md)"
        else:
            shown = ", ".join(spec.models[:_MAX_MODELS])
            more = f", ... ({len(spec.models)} in all)" if len(spec.models) > _MAX_MODELS else ""
            body = shown + more + ("" if spec.models_given else f" ({spec.type}'s defaults)")
        lines.append(f"  {label:<10} {head}: {body}")
        label = ""
    if not statuses:
        lines.append("  providers  none: add one with `keystead providers add`")
    usable = [s.spec for s in statuses if s.error is None]
    found = shadows(claims_of((s.name, s.models, s.type == "mock", s.source) for s in usable))
    for line in describe(found):
        lines.append(f"  shadowed   {line}")
    for name, route in runtime.routes.routes.items():
        targets = ", ".join(d.id for d in route.deployments) or "no deployment"
        problem = runtime.routes.problems.get(name)
        lines.append(f"  route      {name} -> {targets}" + (f" ({problem})" if problem else ""))
    lines.append(f"  store      {_store(runtime)}; counters {_counters(runtime)}")
    lines.append("  docs       docs/quickstart.md, docs/providers.md (which provider answers a "
                 "model), docs/monitoring.md, docs/configuration.md")
    lines.extend(f"  warning    {note}" for note in loaded.notes)
    return "\n".join(lines)


def _signals(config: Config, base: str, host: str) -> str:
    """Where to watch it, and a warning when per-key metrics are open to the network."""
    metrics = config.metrics
    if not metrics.enabled:
        shown = "metrics off"
    elif metrics.token is not None:
        shown = f"metrics {base}/metrics (token: metrics.token)"
    elif host in ("127.0.0.1", "::1", "localhost"):
        shown = f"metrics {base}/metrics (open on loopback)"
    else:
        shown = (f"metrics {base}/metrics OPEN to the network: it names keys, teams and spend; "
                 "set metrics.token")
    alerts = config.alerts
    channels = len(alerts.channels) if alerts.enabled else 0
    parts = [shown, f"alerts to {channels} channel{'s' * (channels != 1)}"
             if channels else "alerts: no channel (docs/monitoring.md)"]
    parts.append(f"checks every {config.checks.every}" if config.checks.every else "checks: none")
    if config.tracing.enabled:
        parts.append(f"traces to {config.tracing.endpoint}")
    return "; ".join(parts)


def _store(runtime: Runtime) -> str:
    url = runtime.config.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") \
            and url != "sqlite:///:memory:":
        return f"SQLite {runtime.loaded.resolve_path(url[len('sqlite:///'):]).resolve()}"
    if url.startswith("sqlite:"):
        return f"SQLite {url[len('sqlite:///'):]}"
    return f"PostgreSQL {_without_password(url)}"


def _counters(runtime: Runtime) -> str:
    redis = runtime.config.redis
    if redis.url:
        return f"Redis {_without_password(redis.url)} (prefix {redis.prefix}, shared by replicas)"
    return "in this process (replicas share them through redis.url)"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    netloc = f"{user}{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
