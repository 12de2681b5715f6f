"""Google Gemini through its OpenAI-compatible endpoint: Bearer auth, OpenAI's paths and wire
format (`/v1beta/openai/chat/completions`, `/embeddings`, `/models`). Its own type so the price
book looks models up in Google's table."""

from __future__ import annotations

from keystead.providers.openai_compatible import OpenAICompatibleProvider

__all__ = ["GeminiProvider"]


class GeminiProvider(OpenAICompatibleProvider):
    type = "gemini"
