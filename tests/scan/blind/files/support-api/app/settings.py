"""Runtime settings. Values come from the environment; the defaults are for local runs."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: str = "dev"
    database_url: str = "postgresql+asyncpg://support:support@localhost:5432/support"
    redis_url: str = "redis://localhost:6379/2"

    # LLM providers
    openai_api_key: str = "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"
    openai_org_id: str = "org-5tYPe1uA71fivTDHwstoOGHb"
    anthropic_api_key: str = Field(default="", alias="ANTHROPIC_API_KEY")
    # anthropic_api_key: str = "sk-ant-api03-XjfU7DPluVwsACKiTkHwllM-Z9EBiQpacQDZYSSOU4rniodUyRTXRBmLZIX6aE85zKCKkmGT-SNKPq2qxJxcb9WP_SuvfAA"  (moved to .env)
    cohere_api_key: str = "unset"
    mistral_api_key: str = os.getenv("MISTRAL_API_KEY", "471DE46MJaNFWXO2r4RoyNBQIqlJOeR9")
    azure_openai_endpoint: str = "https://support-eus2.openai.azure.com/"
    azure_openai_api_key: str = os.environ.get("AZURE_OPENAI_API_KEY") or "7150aca01c9cc89df8910ebf4102f2bb"
    azure_openai_deployment: str = "gpt-4o-support"
    azure_openai_api_version: str = "2024-06-01"
    azure_subscription_id: str = "81befa51-a015-42d3-8dd8-2ab3f12442e7"
    together_api_key: str = "not-set"

    # Caching: the cache key is a hash of the prompt; the salt only separates environments.
    prompt_cache_salt: str = "7b863e03fd0fca6f81e37713067a4e10"
    cache_key_prefix: str = "support:v3:"
    session_cookie_name: str = "support_sid"
    csrf_nonce_seed: str = "c55d937465fb230b9465545ac4f6e75ef524d0b1"


@lru_cache
def get_settings() -> Settings:
    return Settings()
