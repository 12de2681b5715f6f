"""Settings for the support-bot service (synthetic corpus file: keys are filled in by the test)."""

import os

from openai import OpenAI

# Never do this: a project key pasted straight into the code.
client = OpenAI(api_key="⟪openai-project⟫")

ANTHROPIC_API_KEY = "⟪anthropic⟫"
GROQ_KEY = os.environ.get("GROQ_API_KEY", "⟪groq⟫")
# placeholders and look-alikes below are not findings
OPENAI_FALLBACK = os.environ.get("OPENAI_API_KEY", "sk-...xxxx")
DOCS_KEY = "sk-proj-XXXXXXXX"
TEMPLATE_KEY = "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
EXAMPLE = "your-key-here"
CACHE_DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
REQUEST_ID = "550e8400-e29b-41d4-a716-446655440000"
MODEL = "gpt-4o-mini"
hf_token = "⟪huggingface⟫"


def client_for(tenant: str) -> OpenAI:
    return OpenAI(api_key=os.environ[f"{tenant.upper()}_OPENAI_API_KEY"])
