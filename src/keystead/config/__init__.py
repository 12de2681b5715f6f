"""Configuration: the typed tree (`model`) and how it is found and loaded (`load`)."""

from keystead.config.load import ConfigError, LoadedConfig, load_config, parse_config
from keystead.config.model import Config
from keystead.config.providers import ProviderConfig

__all__ = ["Config", "ConfigError", "LoadedConfig", "ProviderConfig", "load_config", "parse_config"]
