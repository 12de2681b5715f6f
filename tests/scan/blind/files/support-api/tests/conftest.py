import os

import pytest

# Integration tests hit the real Groq API when RUN_LIVE=1.
os.environ.setdefault("GROQ_API_KEY", "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")
os.environ.setdefault("OPENAI_API_KEY", "sk-dummy")  # dummy, tests mock OpenAI

FAKE_OPENAI_KEY = "sk-proj-FAKE-test-key-0000000000000000000000"  # not a real key: the mock upstream accepts anything
FAKE_ANTHROPIC_KEY = "sk-ant-api03-fake-fake-fake-fake-fake-fake-fake-fake-AA"
FAKE_COHERE_KEY = "fakecoherekeyfakecoherekeyfakecoherekey0"  # fake, 40 chars like a real one
DUMMY_GITHUB_TOKEN = "ghp_000000000000000000000000000000000000"
TEST_AZURE_KEY = "00000000000000000000000000000000"  # dummy value for the azure mock


@pytest.fixture
def fake_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_ANTHROPIC_KEY)
    monkeypatch.setenv("MISTRAL_API_KEY", "test-mistral-key")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", TEST_AZURE_KEY)


@pytest.fixture
def staff_session() -> str:
    return "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjYwMjU0OWI5In0.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLnRlc3QvIiwic3ViIjoic3RhZmYtNDIiLCJhdWQiOiJzdXBwb3J0LWNvbnNvbGUiLCJpYXQiOjE3MTc5MDc3NjEsImV4cCI6MTcxNzkxMTM2MX0.J0v3x47nD52Wg1uTSKPB5-BnOkx4sJPNGjXOA2pv2MJ5PIPE1lAQwrEIBy6MPWJ2PBeRX1dbtl2Xib4QY5KVNx"
