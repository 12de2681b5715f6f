"""The shapes real leaks take (issue 16): keys known only by the name they are given, keys split
or wrapped, webhook URLs, keystead's own secrets in those places, and GitHub's checksum; each
with the hard negatives that look like them."""

from __future__ import annotations

import base64
import json
import random

import pytest

from keystead.scan.scanner import scan_text
from scan.synth import B62, HEX, found, github_token, master_key, synth, webhook

RNG = random.Random(1616)
COHERE, MISTRAL = synth("cohere", RNG), synth("mistral", RNG)
AZURE, TOGETHER = synth("azure-openai", RNG), synth("together-legacy", RNG)
DEEPSEEK, AWS = synth("deepseek", RNG), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq3Kr9s+Lt"
OPENAI = synth("openai-project", RNG)


# --- 1. keys known by their name -----------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "detector", "secret"), [
    (f'COHERE_API_KEY = "{COHERE}"', 1, "cohere", COHERE),
    (f'const cfg = {{ cohereKey: "{COHERE}" }};', 1, "cohere", COHERE),
    (f"MISTRAL_API_KEY={MISTRAL}", 1, "mistral", MISTRAL),
    (f'{{"providers": {{"mistral_api_key": "{MISTRAL}"}}}}', 1, "mistral", MISTRAL),
    (f'[cohere]\ntimeout = 30\napi_key = "{COHERE}"\n', 3, "cohere", COHERE),
    (f"llm:\n  cohere:\n    enabled: true\n    retries: 3\n    apiKey: {COHERE}\n", 5, "cohere",
     COHERE),
    (f'{{\n  "mistral": {{\n    "model": "large",\n    "apiKey": "{MISTRAL}"\n  }}\n}}', 4,
     "mistral", MISTRAL),
    (f'env:\n  - name: LOG_LEVEL\n    value: info\n  - name: COHERE_API_KEY\n    value: "{COHERE}"',
     5, "cohere", COHERE),
    (f"mistral.api.key={MISTRAL}\n", 1, "mistral", MISTRAL),
    (f"python eval.py --cohere-api-key {COHERE} --limit 10", 1, "cohere", COHERE),
    (f"curl https://contoso.openai.azure.com/openai/deployments/gpt-4o/chat/completions \\\n"
     f'  -H "Content-Type: application/json" \\\n  -d @body.json \\\n  -H "api-key: {AZURE}"',
     4, "azure-openai", AZURE),
    (f"POST https://api.mistral.ai/v1/chat/completions\nAccept: application/json\n"
     f"Authorization: Bearer {MISTRAL}\n", 3, "mistral", MISTRAL),
    (f"2025-01-02 INFO POST https://api.cohere.com/v2/chat headers={{'Authorization': "
     f"'Bearer {COHERE}'}}", 1, "cohere", COHERE),
    (f'client = cohere.ClientV2("{COHERE}")', 1, "cohere", COHERE),
    (f'DEEPSEEK_API_KEY="{DEEPSEEK}"', 1, "deepseek", DEEPSEEK),
    (f"together:\n  api_key: {TOGETHER}\n", 2, "together-legacy", TOGETHER),
    (f"aws:\n  region: eu-west-1\n  secret_access_key: {AWS}\n", 3, "aws-secret-access-key",
     AWS),
    (f"provider,team,api_key\ncohere,search,{COHERE}\n", 2, "cohere", COHERE),
    (f"name\tapi_key\tcreated\nMISTRAL_API_KEY\t{MISTRAL}\t2025-01-01\n", 2, "mistral", MISTRAL),
    (f"# Mistral (la Plateforme)\nAPI_KEY={MISTRAL}\n", 2, "mistral", MISTRAL),
])
def test_a_key_is_found_by_the_name_it_is_given(text: str, line: int, detector: str,
                                                 secret: str) -> None:
    assert (line, detector, secret) in found(text)


@pytest.mark.parametrize("text", [
    f'api_key = "{MISTRAL}"',  # a generic name alone does not say whose key it is
    f'API_KEY="{COHERE}"\nTIMEOUT=30',
    f'# put the pieces together\ntoken = "{TOGETHER}"',  # the English word is not the provider
    f'MISTRAL_MODEL = "mistral-large"\nSESSION_ID = "{MISTRAL}"',  # no credential word
    f"buffer = load_cohere_index(items)\n    \"cache_key\": \"{AZURE}\",",  # code, not a name
    "cohere:\n  apiKey: ${COHERE_API_KEY}\n",
    "cohere:\n  apiKey: <your-cohere-key>\n",
    "MISTRAL_API_KEY=********************************\n",
    'mistral:\n  apiKey: "{{ .Values.secrets.mistralKey }}"\n',
    f"together:\n  image_digest: sha256:{''.join(RNG.choices(HEX, k=64))}\n",
    "COHERE_API_KEY_ID=7d44a1e0-5b8e-4d2a-9b3e-6f1c2d3e4a5b\n",
    "MISTRAL_TOKEN=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9"
    "PlFUP0THsR8U\n",
    "azure_logo: data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42m"
    "NkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==\n",
    "provider,team,api_key\ncohere,search,\nmistral,chat,REDACTED\n",
    "The coherent summary key points were put together by Mistral's team.\n",
])
def test_a_value_not_tied_to_a_provider_is_not_a_finding(text: str) -> None:
    assert found(text) == []


# --- 2. split and wrapped -------------------------------------------------------------------

HEAD, TAIL = OPENAI[:8], OPENAI[8:]  # "sk-proj-" and the rest


@pytest.mark.parametrize(("text", "line"), [
    (f'key = "{HEAD}" + "{TAIL}"', 1),
    (f'KEY = (\n    "{HEAD}"\n    "{TAIL[:60]}"\n    "{TAIL[60:]}"\n)', 2),
    (f'const key = "{HEAD}" +\n  "{TAIL}";', 1),
    (f"$key = '{HEAD}' . '{TAIL}';", 1),
    (f'curl https://api.openai.com/v1/models \\\n  -H "Authorization: Bearer {OPENAI[:40]}\\\n'
     f'{OPENAI[40:]}"', 1),
    (f'msg = "first half {HEAD}{TAIL[:30]}\\\n{TAIL[30:]}"', 1),
    (f"name,key,created\nprod,{OPENAI},2025-01-01\n", 2),
    (f"name\tkey\nprod\t\"{OPENAI}\"\n", 2),
    (json.dumps({"body": json.dumps({"api_key": OPENAI})}), 1),
    (json.dumps({"log": f"loaded key\n{OPENAI}\n"}), 1),
    (f"https://api.example.net/v1?api_key={OPENAI}&user=2", 1),
])
def test_a_split_or_wrapped_key_is_found_whole_at_its_first_line(text: str, line: int) -> None:
    assert (line, "openai-project", OPENAI) in found(text)


def test_escaped_and_percent_encoded_slashes_are_read_back() -> None:
    escaped = AWS.replace("/", "\\/")
    unicode = AWS.replace("/", "\\u002f")
    encoded = AWS.replace("/", "%2F").replace("+", "%2B")
    assert (1, "aws-secret-access-key", AWS) in found(f'{{"aws_secret_access_key": "{escaped}"}}')
    assert (1, "aws-secret-access-key", AWS) in found(f'"aws_secret_access_key": "{unicode}"')
    access = "AKIA" + "".join(RNG.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=16))
    got = found(f"s3://{access}:{encoded}@my-bucket/prefix")
    assert (1, "aws-access-key-id", access) in got and (1, "aws-secret-access-key", AWS) in got


def test_keys_in_urls_query_and_user_info() -> None:
    google = synth("google-ai", RNG)
    gh = github_token(RNG)
    assert found(f"https://generativelanguage.googleapis.com/v1/models?key={google}") == [
        (1, "google-ai", google)]
    assert found(f"git clone https://x-access-token:{gh}@github.com/org/repo.git") == [
        (1, "github", gh)]


@pytest.mark.parametrize("text", [
    '"sk-proj-" + "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"',
    '"sk-proj-" + os.environ["OPENAI_KEY_TAIL"]',
    'print("a" "b")\nKEY = "sk-proj-" + "short"',
    "https://hooks.example.com/?key=${GOOGLE_API_KEY}",
])
def test_pieces_that_do_not_join_into_a_key_are_not_findings(text: str) -> None:
    assert found(text) == []


# --- 3. webhooks and keystead's own secrets --------------------------------------------------

@pytest.mark.parametrize("kind", ["slack-webhook", "discord-webhook", "teams-webhook",
                                  "azure-workflow-webhook"])
def test_incoming_webhook_urls_are_found_where_keys_are(kind: str) -> None:
    url = webhook(kind, RNG)
    for text in (f"SLACK_URL={url}", f'  webhook_url: "{url}"', json.dumps({"hook": url}),
                 f"curl -X POST -d @msg.json '{url}'", f'url = "{url[:-20]}" + "{url[-20:]}"'):
        assert found(text) == [(1, kind, url)], text


@pytest.mark.parametrize("text", [
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "https://hooks.slack.com/services/TXXXXXXXX/BXXXXXXXX/your-webhook-token",
    "https://discord.com/api/webhooks/123456789012345678/your-webhook-token-here",
    "https://discord.com/api/webhooks/{id}/{token}",
    "https://hooks.slack.com/services/${SLACK_TEAM}/${SLACK_CHANNEL}/${SLACK_TOKEN}",
    "https://contoso.webhook.office.com/webhookb2/<group>@<tenant>/IncomingWebhook/<id>/<owner>",
    "https://discord.com/channels/123456789012345678/987654321098765432",
])
def test_webhook_placeholders_and_other_urls_are_not_findings(text: str) -> None:
    assert found(text) == []


def test_keystead_secrets_in_the_new_places() -> None:
    key = master_key(RNG)
    admin = "ksa_" + "".join(RNG.choices(B62 + "-_", k=43))
    assert found(f"keystead:\n  vault:\n    masterKey: {key}\n") == [
        (3, "keystead-master-key", key)]
    assert found(f"keystead serve --master-key {key}") == [(1, "keystead-master-key", key)]
    assert found(json.dumps({"env": f"KEYSTEAD_MASTER_KEY={key}\nOTHER=1"})) == [
        (1, "keystead-master-key", key)]
    assert found(f'token = "{admin[:10]}" + "{admin[10:]}"') == [
        (1, "keystead-admin-token", admin)]
    assert found(f'curl -H "Authorization: Bearer {admin}" http://gw/admin/keys') == [
        (1, "keystead-admin-token", admin)]
    assert found(f"parse:\n  masterKey: {key}\n") == []  # another product's master key


# --- 4. checksums ---------------------------------------------------------------------------

def test_github_tokens_are_verified_by_their_checksum() -> None:
    for kind in "pousr":
        token = github_token(RNG, kind)
        [finding] = scan_text(f"GH_TOKEN={token}", "x")
        assert finding.verified == "checksum"
        last = token[-1]
        bad = token[:-1] + ("A" if last != "A" else "B")
        assert scan_text(f"GH_TOKEN={bad}", "x") == []
        swapped = token[:4] + token[5] + token[4] + token[6:]
        if swapped != token:
            assert scan_text(f"GH_TOKEN={swapped}", "x") == []


def test_only_checksummed_formats_say_verified() -> None:
    text = f"GROQ_API_KEY={synth('groq', RNG)}\nKEY={synth('keystead', RNG)}"
    assert [(f.detector, f.verified) for f in scan_text(text, "x")] == [
        ("groq", None), ("keystead", "checksum")]


def test_random_github_shaped_strings_almost_never_pass() -> None:
    fakes = ["ghp_" + "".join(RNG.choices(B62, k=36)) for _ in range(2000)]
    assert sum(bool(scan_text(f"t={fake}", "x")) for fake in fakes) == 0


def test_a_base64_blob_holding_a_key_is_not_read_as_one() -> None:
    blob = base64.b64encode(f"token={OPENAI}".encode()).decode()
    assert found(f"data: {blob}") == []


def test_a_label_names_only_its_item_and_a_random_value_is_never_a_path() -> None:
    far = "\n".join(f"    x{i} = {i}" for i in range(20))
    assert found(f'cfg = {{\n    "provider": "azure",\n{far}\n    "token": "{AZURE}",\n}}') == []
    assert found(f'    "provider": "{AZURE}",\n    region = azure_region(tokens)\n') == []
