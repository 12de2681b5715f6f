"""What a reload applies and what it keeps until a restart (reload.py), on config trees alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keystead.config.load import parse_config
from keystead.config.model import Config
from keystead.reload import RESTART_ONLY, changes, keep_running


def config(**sections: Any) -> Config:
    return parse_config(sections, {}, source="test")


def test_every_restart_only_setting_exists() -> None:
    # A misspelt name here would let a reload swap in a setting the process cannot take over.
    for section, fields in RESTART_ONLY.items():
        assert section in Config.model_fields
        model = type(getattr(Config(), section))
        for name in fields or ():
            assert name in model.model_fields, f"{section}.{name}"


def test_changes_name_what_applies_and_what_needs_a_restart() -> None:
    old = config(providers={"a": {"type": "mock"}, "b": {"type": "mock"}},
                 routing={"cache_backend": "memory"})
    new = config(providers={"a": {"type": "mock", "models": ["m"]}, "c": {"type": "mock"}},
                 routing={"cache_backend": "redis", "direct_attempts": 2},
                 server={"port": 9000, "cors_origins": ["https://app.example.com"]},
                 database={"url": "postgresql://db/keystead"},
                 prices={"m": {"input_per_mtok": 1, "output_per_mtok": 2}})
    applied, restart = changes(old, new)
    assert applied == ["server.cors_origins", "providers.a", "providers.b", "providers.c",
                       "prices.m", "routing.direct_attempts"]
    assert restart == ["server.port", "database.url", "routing.cache_backend"]
    assert changes(new, new) == ([], [])


def test_keep_running_keeps_what_only_a_restart_changes() -> None:
    old = config(server={"port": 8080}, redis={"url": "redis://a:6379/0"},
                 limits={"lease_s": 30})
    new = config(server={"port": 9000, "max_body_bytes": 2048},
                 redis={"url": "redis://b:6379/0"},
                 limits={"lease_s": 5, "default_max_tokens": 10},
                 routes={"r": {"deployments": [{"provider": "p", "model": "m"}]}})
    kept = keep_running(old, new)
    assert kept.server.port == 8080 and kept.server.max_body_bytes == 2048
    assert kept.redis == old.redis
    assert kept.limits.lease_s == 30 and kept.limits.default_max_tokens == 10
    assert kept.routes == new.routes
    assert changes(old, kept) == (["server.max_body_bytes", "limits.default_max_tokens",
                                   "routes.r"], [])


def test_the_docs_name_every_setting_that_needs_a_restart() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs"
    configuration = (docs / "configuration.md").read_text()
    operations = (docs / "operations.md").read_text()
    table = configuration[configuration.index("| Needs a restart |"):]
    for section, fields in RESTART_ONLY.items():
        for name in [f"{section}.{f}" for f in fields] if fields else [section]:
            assert f"`{name}`" in table, name
            assert f"`{name}`" in operations, name
