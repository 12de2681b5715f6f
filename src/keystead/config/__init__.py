"""Configuration: the typed tree (`model`) and how it is found and loaded (`load`).

The names below are imported on first use: importing `keystead.config.load` (which every CLI
command does) must not build the pydantic models of `model` (~0.1 s) for commands that do not
read a config at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keystead.config.load import ConfigError, LoadedConfig, load_config, parse_config
    from keystead.config.model import Config
    from keystead.config.providers import ProviderConfig

__all__ = ["Config", "ConfigError", "LoadedConfig", "ProviderConfig", "load_config", "parse_config"]

_WHERE = {"Config": "model", "ProviderConfig": "providers", "ConfigError": "load",
          "LoadedConfig": "load", "load_config": "load", "parse_config": "load"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
