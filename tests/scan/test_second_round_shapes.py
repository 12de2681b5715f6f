"""Shapes found missing by the blind corpus's second round (issue 16), each as a class with
fresh keys, other names and other file types than the corpus, and the near misses that must
stay silent."""

from __future__ import annotations

import random

import pytest

from scan.synth import B62, URLSAFE, found, synth, webhook

RNG = random.Random(20240616)
COHERE, MISTRAL = synth("cohere", RNG), synth("mistral", RNG)
AZURE, TOGETHER = synth("azure-openai", RNG), synth("together-legacy", RNG)
DEEPSEEK, AWS = synth("deepseek", RNG), synth("aws-secret-access-key", RNG)
OPENAI, GROQ = synth("openai-project", RNG), synth("groq", RNG)
XAI, REPLICATE = synth("xai", RNG), synth("replicate", RNG)
ANTHROPIC, PERPLEXITY = synth("anthropic", RNG), synth("perplexity", RNG)
SLACK = webhook("slack-webhook", RNG)


# --- a name that is the provider's, with no credential word ------------------------------------

@pytest.mark.parametrize(("text", "line", "detector", "secret"), [
    (f'MISTRAL_PROD = "{MISTRAL}"\n', 1, "mistral", MISTRAL),
    (f"const cohereStaging = '{COHERE}';\n", 1, "cohere", COHERE),
    (f"settings:\n  cohere_fallback: {COHERE}\n", 2, "cohere", COHERE),
    # DeepSeek's `sk-` says "secret key": the provider's name is the only tie it needs.
    (f"let deepseek = \"{DEEPSEEK}\";\n", 1, "deepseek", DEEPSEEK),
    (f"# DeepSeek playground: {DEEPSEEK}\n", 1, "deepseek", DEEPSEEK),
    (f"REM deep-seek {DEEPSEEK}\n", 1, "deepseek", DEEPSEEK),
])
def test_a_value_named_after_the_provider_alone_is_found(text: str, line: int, detector: str,
                                                         secret: str) -> None:
    assert (line, detector, secret) in found(text)


@pytest.mark.parametrize("text", [
    f'MISTRAL_REQUEST_ID = "{MISTRAL}"\n',  # an id named after the provider is not its key
    f'cohere_model_hash = "{COHERE}"\n',
    f'mistral_session = "{MISTRAL}"\n',
    f'MISTRAL = "mistral-large"\nNONCE = "{MISTRAL}"\n',
    f"deepseek-coder weights sha256: {DEEPSEEK}\n",  # a digest's label
    f"COHERE_PROD = load('{COHERE}')\n",  # an argument to something else
])
def test_a_provider_name_without_a_key_shape_or_with_an_id_word_is_silent(text: str) -> None:
    assert found(text) == []


# --- a provider field or flag on the line ----------------------------------------------------

@pytest.mark.parametrize(("text", "line", "detector", "secret"), [
    (f"deploy.sh --provider=together --api-token {TOGETHER} --dry-run\n", 1, "together-legacy",
     TOGETHER),
    (f'{{"vendor": "together", "token": "{TOGETHER}"}}\n', 1, "together-legacy", TOGETHER),
    (f"account,platform,secret\nprod,aws,{AWS}\n", 2, "aws-secret-access-key", AWS),
    # Many columns between the provider's and the key's: the row still ties them.
    ("id,provider,region,created,updated,owner,requests,prompt_tokens,completion_tokens,cost,"
     "credential\n"
     f"17,mistral,eu-west-3,2024-01-01T00:00:00Z,2024-02-02T00:00:00Z,data-team,123456,7654321,"
     f"1234567,4321.12,{MISTRAL}\n", 2, "mistral", MISTRAL),
    (f"owner\tregion\tcreated\tupdated\trequests\tcost_usd\tprovider\ttoken\n"
     f"ml\tus-east-1\t2024-01-01\t2024-02-02\t123456789\t4321.12\tcohere\t{COHERE}\n", 2,
     "cohere", COHERE),
])
def test_a_provider_field_on_the_line_ties_the_value(text: str, line: int, detector: str,
                                                     secret: str) -> None:
    assert (line, detector, secret) in found(text)


@pytest.mark.parametrize("text", [
    f"run --provider together --seed {TOGETHER}\n",  # no credential word
    f"provider,build_sha\ntogether,{TOGETHER}\n",
    f"platform,checksum\naws,{AWS}\n",
])
def test_a_provider_field_without_a_credential_name_is_silent(text: str) -> None:
    assert found(text) == []


# --- the provider's host on the same line, far from the key ----------------------------------

def test_a_key_in_the_query_of_a_long_url_to_the_providers_host() -> None:
    line = ("10.0.3.7 - - [12/Jun/2024:10:11:12 +0000] \"GET https://rg-prod-weu-01.cognitive"
            "services.azure.com/openai/deployments/text-embedding-3-large-prod/embeddings"
            f"?api-version=2024-02-15-preview&subscription-key={AZURE} HTTP/1.1\" 200 512\n")
    assert (1, "azure-openai", AZURE) in found(line)


# --- HCL blocks name what is inside them -----------------------------------------------------

def test_a_terraform_block_label_names_the_values_inside() -> None:
    text = (f'variable "mistral_token" {{\n  description = "for the eval job"\n  type = string\n'
            f'  default = "{MISTRAL}"\n}}\n\nlocals {{\n  region = "eu"\n}}\n'
            f'resource "vault_generic_secret" "cohere" {{\n  path = "kv/llm"\n'
            f'  data_json = jsonencode({{\n    api_key = "{COHERE}"\n  }})\n}}\n')
    got = found(text)
    assert (4, "mistral", MISTRAL) in got and (13, "cohere", COHERE) in got


def test_a_terraform_block_label_without_a_credential_word_is_silent() -> None:
    text = f'variable "azure_subscription" {{\n  default = "{AZURE}"\n}}\n'
    assert found(text) == []


# --- concatenating calls and templates -------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "detector", "secret"), [
    (f'KEY = "".join(["{OPENAI[:8]}", "{OPENAI[8:70]}", "{OPENAI[70:]}"])\n', 1,
     "openai-project", OPENAI),
    (f"const k = [\n  '{GROQ[:4]}',\n  '{GROQ[4:30]}',\n  '{GROQ[30:]}',\n].join('');\n", 2,
     "groq", GROQ),
    (f'static K: &str = concat!(\n    "{XAI[:4]}",\n    "{XAI[4:44]}",\n    "{XAI[44:]}"\n);\n',
     2, "xai", XAI),
    (f'tok := strings.Join([]string{{"{REPLICATE[:3]}", "{REPLICATE[3:]}"}}, "")\n', 1,
     "replicate", REPLICATE),
    (f"const t = `${{'{REPLICATE[:3]}'}}${{'{REPLICATE[3:]}'}}`;\n", 1, "replicate",
     REPLICATE),
    (f"key = f\"{{'{PERPLEXITY[:5]}'}}{{'{PERPLEXITY[5:]}'}}\"\n", 1, "perplexity",
     PERPLEXITY),
])
def test_pieces_joined_by_a_call_or_a_template_are_found(text: str, line: int, detector: str,
                                                         secret: str) -> None:
    assert (line, detector, secret) in found(text)


@pytest.mark.parametrize("text", [
    f'k = ", ".join(["{GROQ[:4]}", "{GROQ[4:]}"])\n',  # a separator: not one token
    f'k = ["{GROQ[:4]}", "{GROQ[4:]}"]\n',  # a list, not joined
    f"k = [\"{GROQ[:4]}\", os.environ['T']].join('')\n",
])
def test_pieces_not_joined_into_one_token_are_silent(text: str) -> None:
    assert found(text) == []


def test_a_listed_key_is_not_glued_to_the_next_item() -> None:
    text = f'KEYS = concat!("{GROQ}", "{"".join(RNG.choices(B62, k=8))}")\n'
    assert found(text) == [(1, "groq", GROQ)]


# --- a key wrapped onto the next line with no continuation mark -------------------------------

@pytest.mark.parametrize(("text", "line", "secret"), [
    (f"On Tue, ops wrote:\n> here is the new one: {ANTHROPIC[:50]}\n> {ANTHROPIC[50:]}\n> thanks\n",
     2, ANTHROPIC),
    (f"$ cat creds.txt\ntoken={ANTHROPIC[:70]}\n{ANTHROPIC[70:]}\n$ exit\n", 2, ANTHROPIC),
    (f"    # fallback for the nightly eval job (rotate after the demo): {GROQ[:30]}\n"
     f"    # {GROQ[30:]}\n", 1, GROQ),
])
def test_a_prefixed_key_wrapped_by_a_mail_client_or_terminal_is_found(text: str, line: int,
                                                                      secret: str) -> None:
    assert [(f[0], f[2]) for f in found(text)] == [(line, secret)]


@pytest.mark.parametrize("text", [
    f"{OPENAI}\nThe key above was revoked.\n",
    f"> {GROQ}\n> abc\n",
    f"key: {ANTHROPIC}\nAAA\n",
])
def test_a_whole_key_at_a_line_end_is_not_glued_to_the_next_line(text: str) -> None:
    secrets = [s for _, _, s in found(text)]
    assert len(secrets) == 1 and secrets[0] in (OPENAI, GROQ, ANTHROPIC)


def test_a_short_prefixed_token_at_a_line_end_is_not_completed_from_prose() -> None:
    # A short line is not wrapped: what follows it is not the rest of a token.
    text = (f"see {GROQ[:20]}\n{''.join(RNG.choices(B62, k=36))} and more\n"
            f"ref {OPENAI[:30]}\n{''.join(RNG.choices(URLSAFE, k=120))}\n")
    assert found(text) == []


# --- a key a view finds is reported at the line it is on --------------------------------------

@pytest.mark.parametrize("text", [
    f'curl -X POST -H "Content-Type: application/json" \\\n'
    f'  -d \'{{"text": "hi"}}\' \\\n  {SLACK}\n',
    f'notify:\n  script:\n    - >\n      curl -d "{{\\"text\\": \\"done\\"}}"\n      "{SLACK}"\n',
    f'curl https://api.openai.com/v1/models \\\n  -H "Authorization: Bearer {OPENAI}"\n',
])
def test_a_key_is_reported_once_at_its_own_line(text: str) -> None:
    lines = text.split("\n")
    where = next(i + 1 for i, line in enumerate(lines) if (SLACK in line or OPENAI in line))
    assert [f[0] for f in found(text)] == [where]


# --- OpenAI's project keys, with or without the marker -----------------------------------------

def test_a_long_project_key_without_the_marker_is_still_a_key() -> None:
    """The prompt guard and the error redaction share the detectors and must mask a key of any
    vintage: the marker is not required (see the limits in docs/scanner.md)."""
    key = "sk-proj-" + "".join(RNG.choices(URLSAFE, k=80))
    assert found(f"OPENAI_API_KEY={key}\n") == [(1, "openai-project", key)]
