"""BYOK: a customer's provider key is checked for shape before we store it."""

import pytest

from app.byok import KeyShapeError, check_shape

# Shapes that must be refused. None of these is a key: each breaks the provider's format.
MALFORMED = [
    ("openai", "sk-proj-3NApFAAV_DiBDDHbpfwJ"),
    ("openai", "sk-proj-gY2TZQgpwtl1NRSERROl1V00EeoSI67j9l3GVy8U a11bXklQ2fLAz5KkvtY4C6agkyJdMQkujXXZvE9H"),
    ("anthropic", "sk-ant-api03-B0tiWwm0wWqB9Mdd-sgyuZQVisTl-A5BDrFCxPgn"),
    ("anthropic", "sk-ant-api03-DsT97jHOB7XFyOouEJToBecLxM4ibYjRYzD4j3lW7j60MSZW8UXeKzeduPkwEZMciUZT9JcVnDYxvz957irYBKXXPtQOnZZ"),
    ("google-ai", "AIzau-YebvsafS84kxGoySpD"),
    ("google-ai", "AIzaTwPFIzqUydIX58Gz1wSk8jNfnAHxbl!@#$%"),
    ("azure-openai", "41dcd8aec6a591e839f675b0e0f3c6d"),
    ("azure-openai", "8e2962f1ec071613bc03ae1fa9cdwxyz"),
    ("mistral", "1jpg5YnUzB8Vsk8W8nKCZdGwr4Wxw6z"),
    ("mistral", "bd6qhj87UQhPYzvT-OMg2BW2Q1XQy98y"),
    ("cohere", "9e4VXnI7tceypix2EcmuhxevmmknmJmXjiBYcMz"),
    ("cohere", "lLL8sm2WGp2nuuZCPRdq_AA83NuBxpAMdGef2xDC"),
    ("deepseek", "sk-8302197e91d4f7be19aaaadb0e2fd39"),
    ("deepseek", "sk-quptkkvxqoxxorpmwsunzhhmqytnlykm"),
    ("together", "tgp_v1_pHui5aiyH6ZP"),
    ("groq", "gsk_FK9XCpxB9k5aOkCEoG6x"),
    ("xai", "xai-Px3erZxDN0EPGlA5dtD7QokEMYYJoD"),
    ("perplexity", "pplx-a3ea430a5be28b65c8a2"),
    ("huggingface", "hf_5016934303546381194502627092897051"),
    ("replicate", "r8_P8GqSjSaHXjx"),
    ("fireworks", "fw_Lx2ozMjqFO"),
    ("openrouter", "sk-or-v1-8e9b242a87ff850410432b9302fe6b3024e85905"),
    ("langsmith", "lsv2_pt_6c6bb17c5f5d9696fc2ba8e87a7adf84"),
    ("aws", "AKIAgzxdjaxkstzdqqdw"),
    ("aws", "AKIAXFXEG4OFBS5E"),
    ("github", "ghp_TeIitTMydRScMZV9tQPX"),
    ("keystead", "ksk_kzd4fslheTXxpvqurVQeEdu6Otfz"),
]

# Token-shaped strings whose checksum is wrong (typos): refused without calling GitHub.
BAD_CHECKSUM = [
    "ghp_JCHItNKuwMgipb7BRK62Ua3SGkYOzfYlNDwG",
    "gho_ZMEWynxfnzS6EggYSCZLbKPLeMuGsk1E9vIQ",
    "ghu_bUU9O8yZap1vNsyMFn3VzGS82nNvVRKuhn0I",
    "ghs_kRhEmUUIXXIJk21DcYIg2pOfwzwGmp0Pnmwz",
    "ghr_XNtUqypV9J0osOIGGyvpdrfgw6pwWdIRAOoF",
    "ghp_VTqPCrfMqZH0KQ24O7UB4FwMW1DrpCzzW8va",
    "gho_Y4fQdbMKjIxkPjCskz2g7FaBYHLnFfchcMVH",
    "ghs_R5V6IoGpmhRA61nwV1wxxoz3Yp0zTrH3XcXQ",
    "ksk_sjjflytcqgZ3WcQNI5Eru2YzkydW1bgt2VK0I9k65WQbIi",
    "ksk_6p3ycjfnDYWNIjmq5t2euPwl42nbci8yJXsIrP2ahux91n",
    "ksk_wjqxboiamKfIa8zDtBM1gzsJgZiQB78NsGbmeopNNyCbaG",
    "ksk_y36wvlipPcti2Te6DvugGm7sEuE0aiTgN4HlTESTC4TMFH",
    "ghp_P8zJbnue3kx9IiEbZsRaEwt4lPzzwY3nCXii",
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
