"""What `keystead serve` says at start: where things are, who answers which models (and which
names are shadowed), the routes, the store and the counters, and what the config overruled."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from cli.helpers import Project
from keystead.cli.summary import _without_password, render
from keystead.config.model import AdminConfig
from keystead.runtime import Runtime


def summary(project: Project, notes: tuple[str, ...] = (), admin: bool = True,
            **sections: object) -> str:
    async def build() -> str:
        loaded = dataclasses.replace(project.loaded(), notes=notes)
        if not admin:
            sections["admin"] = AdminConfig()
        if sections:
            config = loaded.config.model_copy(update=sections)
            loaded = dataclasses.replace(loaded, config=config)
        runtime = await Runtime.open(loaded, serving=False)
        try:
            return render(runtime, "0.0.0.0", 8080)
        finally:
            await runtime.close()

    return asyncio.run(build())


def test_the_summary_names_providers_shadowed_names_store_and_docs(project: Project) -> None:
    project.ok("providers", "add", "openai", "--type", "openai", "--base-url",
               "http://127.0.0.1:9/v1", "--api-key-stdin", input="sk-summary-0123456789\n")
    text = summary(project)
    lines = text.splitlines()
    assert lines[0] == f"keystead {__import__('keystead').__version__} on http://0.0.0.0:8080 " \
                       f"(config {project.config.resolve()})"
    assert "  API        http://0.0.0.0:8080/v1: chat/completions, embeddings" in text
    assert "/admin (token: admin.token); its docs http://0.0.0.0:8080/admin/docs" in text
    assert ("  providers  mock (mock, config file): gpt-4o-mini, gpt-4o, text-embedding-3-small"
            in lines)
    assert ("             openai (openai, added at run time): gpt-*, chatgpt-*, o1*, o3*, o4*, "
            "text-embedding-*, ft:* (openai's defaults)") in lines
    assert ("  shadowed   gpt-4o-mini, gpt-4o, text-embedding-3-small: openai answers, not mock "
            "(a real provider comes before a mock); mock/gpt-4o-mini still reaches mock") in lines
    assert f"  store      SQLite {project.db.resolve()}; counters in this process" in text
    assert "docs/providers.md" in text
    assert "sk-summary" not in text
    assert len(lines) <= 13
    assert ("  signals    metrics http://0.0.0.0:8080/metrics OPEN to the network: it names keys, "
            "teams and spend; set metrics.token; alerts: no channel (docs/monitoring.md); "
            "checks: none") in lines


def test_the_summary_says_where_the_signals_go(project: Project) -> None:
    from pydantic import SecretStr

    from keystead.config.alerts import AlertsConfig
    from keystead.config.checks import ChecksConfig
    from keystead.config.metrics import MetricsConfig

    text = summary(project, metrics=MetricsConfig(token=SecretStr("m" * 32)),
                   alerts=AlertsConfig.model_validate({"channels": {"oncall": {
                       "type": "slack", "webhook_url": "https://hooks.example/x"}}}),
                   checks=ChecksConfig(every="5m"))
    assert ("  signals    metrics http://0.0.0.0:8080/metrics (token: metrics.token); alerts to "
            "1 channel; checks every 5m") in text.splitlines()
    assert "m" * 32 not in text and "hooks.example" not in text


def test_the_summary_shows_routes_unusable_providers_and_notes(project: Project) -> None:
    project.config.write_text(project.config.read_text() + """\
  local: {type: openai-compatible, base_url: "http://127.0.0.1:9/v1"}
  broken: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key: "file:/nonexistent/k"}
routes:
  support-default:
    deployments: [{provider: mock, model: gpt-4o-mini}, {provider: gone, model: x}]
""")
    text = summary(project, notes=("KEYSTEAD_DATABASE_URL is set but ...",), admin=False)
    assert "local (openai-compatible, config file): serves no model" in text
    assert "broken (openai, config file): UNUSABLE:" in text
    assert "  route      support-default -> mock/gpt-4o-mini (provider 'gone' is not " \
           "available)" in text
    assert "  warning    KEYSTEAD_DATABASE_URL is set but ..." in text
    assert "(off: no admin.token (set KEYSTEAD_ADMIN_TOKEN))" in text


def test_a_database_or_redis_password_is_never_shown() -> None:
    assert _without_password("postgresql://keystead:s3cret@db.internal:5432/keystead") == \
        "postgresql://keystead@db.internal:5432/keystead"
    assert _without_password("redis://:s3cret@cache:6379/0") == "redis://cache:6379/0"
    assert _without_password("postgresql://db.internal/keystead") == \
        "postgresql://db.internal/keystead"


def test_a_failing_summary_never_stops_the_start(project: Project,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from keystead.cli import summary as module

    def broken(*args: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(module, "render", broken)

    async def start() -> None:
        runtime = await Runtime.open(project.loaded(), serving=False)
        try:
            await module.on_ready("127.0.0.1", 8080)(runtime)
        finally:
            await runtime.close()

    asyncio.run(start())
    assert "the start-up summary failed" in caplog.text
