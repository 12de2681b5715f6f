"""BYOK: a customer's provider key is checked for shape before we store it."""

import pytest

from app.byok import KeyShapeError, check_shape

# Shapes that must be refused. None of these is a key: each breaks the provider's format.
MALFORMED = [
    ("openai", "sk-proj-dU34D33Xd-baD5KnotgG"),
    ("openai", "sk-proj-Vy8Ua11bXklQ2fLAz5KkvtY4C6agkyJdMQkujXXZ vE9HkbhynDWpilQ9pgi4OBsu6aWebQBOr8DtkyZU"),
    ("anthropic", "sk-ant-api03-Mdd-sgyuZQVisTl-A5BDrFCxPgnDsT97jHOB7XFy"),
    ("anthropic", "sk-ant-api03-OouEJToBecLxM4ibYjRYzD4j3lW7j60MSZW8UXeKzeduPkwEZMciUZT9JcVnDYxvz957irYBKXXPtQOnu-YebvsafS84kZZ"),
    ("google-ai", "AIzaxGoySpDTwPFIzqUydIX5"),
    ("google-ai", "AIza8Gz1wSk8jNfnAHxblse2X1JQ5XBPwM!@#$%"),
    ("azure-openai", "1e839f675b0e0f3c6d8e2962f1ec071"),
    ("azure-openai", "613bc03ae1fa9cd02f54f44a6823wxyz"),
    ("mistral", "zbd6qhj87UQhPYzvTOMg2BW2Q1XQy98"),
    ("mistral", "y9e4VXnI7tceypix-2EcmuhxevmmknmJ"),
    ("cohere", "mXjiBYcMzlLL8sm2WGp2nuuZCPRdqAA83NuBxpA"),
    ("cohere", "MdGef2xDCG6n14kl3iow_IFSI2Qs9txUFxWMTw3I"),
    ("deepseek", "sk-aaaadb0e2fd39ae9d44fa88b96ce711"),
    ("deepseek", "sk-mqytnlykmjoliwxugyimousqnqkwmlki"),
    ("together", "tgp_v1_WyCGmYgBUbDZ"),
    ("groq", "gsk_GlA5dtD7QokEMYYJoDKv"),
    ("xai", "xai-6SbL9g6aW0LANsfYhtnSv4GyoNwgCv"),
    ("perplexity", "pplx-5c8a2b13c79617b8c633"),
    ("huggingface", "hf_9450262709289705162477948505364874"),
    ("replicate", "r8_ordszyN5W9g5"),
    ("fireworks", "fw_KHEVxUtXYH"),
    ("openrouter", "sk-or-v1-50410432b9302fe6b3024e859056c6bb17c5f5d9"),
    ("langsmith", "lsv2_pt_696fc2ba8e87a7adf846390a33b2b23e"),
    ("aws", "AKIAhcuaryjocoujwolt"),
    ("aws", "AKIA34W7J2ZKZD4F"),
    ("github", "ghp_IBpnst7eTXxpvqurVQeE"),
    ("keystead", "ksk_gytmrsxuuwMgipb7BRK62Ua3SGkY"),
]

# Token-shaped strings whose checksum is wrong (typos): refused without calling GitHub.
BAD_CHECKSUM = [
    "ghp_OzfYlNDwGZMEWynxfnzS6EggYSCZLbKPLeMu",
    "gho_Gsk1E9vIQbUU9O8yZap1vNsyMFn3VzGS82nN",
    "ghu_vVRKuhn0IkRhEmUUIXXIJk21DcYIg2pOfwzw",
    "ghs_Gmp0PnmwzXNtUqypV9J0osOIGGyvpdrfgw6p",
    "ghr_wWdIRAOoFVTqPCrfMqZH0KQ24O7UB4FwMW1D",
    "ghp_rpCzzW8vaY4fQdbMKjIxkPjCskz2g7FaBYHL",
    "gho_nFfchcMVHR5V6IoGpmhRA61nwV1wxxoz3Yp0",
    "ghs_zTrH3XcXQtI9c95BOfJxq2qgZ3WcQNI5Eru2",
    "ksk_bc7uasjg5WQbIiUZbacFROet2dXbh9a5DDYWNIjmq5t2eu",
    "ksk_zecitszcahux91nhbMmkrn9kGcnNeyW1Ee8y0mKfIa8zDt",
    "ksk_lwbt2lhiNsGbmeopNNyCbaGbtrOfushRUMhLqtmmWBvt8F",
    "ksk_zc5gnqhouE0aiTgN4HlTESTC4TMFHP8zJbnue3kx9IiEbZ",
    "ghp_sRaEwt4lPzzwYOYaDPMjBvMxoHTfj12eM9WW",
]

FAKE_BUT_WELL_FORMED = {
    "openai": "sk-proj-FAKE000000000000000000000000000000000000000000000000000000000000T3BlbkFJFAKE000000000000000000000000000000000000000000000000000000000000",  # fake: the test double accepts it
    "google-ai": "AIzaFAKE_FOR_TESTS_ONLY_000000000000",
    "cohere": "FAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKE",
}


@pytest.mark.parametrize(("provider", "text"), MALFORMED)
def test_malformed_keys_are_refused(provider: str, text: str) -> None:
    with pytest.raises(KeyShapeError):
        check_shape(provider, text)


@pytest.mark.parametrize("text", BAD_CHECKSUM)
def test_bad_checksums_are_refused(text: str) -> None:
    with pytest.raises(KeyShapeError, match="checksum"):
        check_shape("github" if text.startswith("gh") else "keystead", text)
