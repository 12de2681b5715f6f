"""The git history of triage-bot: keys added and removed, moved, a .env committed then deleted.

Each commit is (message, {path: text or None}); texts hold markers like the files' templates.
A key is labelled in the version of the file that introduced it; while it stays in that file its
lines do not move (checked below), so a finding in any later commit points at the same lines.
"""

from __future__ import annotations

from corpus_core import MARKER, Corpus
from neg_helpers import bad_github, jwt, sha1

Commit = tuple[str, dict[str, str | None]]

REQS = "fastapi==0.110.0\nhttpx==0.27.0\nopenai==1.14.0\n"
GITIGNORE = "__pycache__/\n*.pyc\n.venv/\n"


def readme(extra: str = "") -> str:
    return ("# triage-bot\n\nLabels incoming support tickets and drafts a first answer.\n\n"
            "## Run\n\n    pip install -r requirements.txt\n    uvicorn bot.app:app\n" + extra)


def build(c: Corpus) -> list[dict[str, object]]:
    oa = c.key("openai", "code-assignment", "proj")
    an = c.key("anthropic", "env-file")
    co = c.key("cohere", "env-file")
    sl = c.key("slack-webhook", "env-file")
    mi = c.key("mistral", "env-file")
    dc = c.key("discord-webhook", "code-assignment")
    dc_moved = c.copy(dc, "code-assignment")
    gq = c.key("groq", "http-header")
    mi2 = c.key("mistral", "helm-values")
    az = c.key("azure-openai", "helm-values")
    hf = c.key("huggingface", "markdown")
    co2 = c.key("cohere", "code-assignment")
    c1, c2 = co2.split(18)
    gh = c.key("github", "ci-file", "ghp")
    ks = c.key("keystead", "env-file", "ksk")
    ka = c.key("keystead", "env-file", "ksa")
    tg = c.key("together", "json-key", "hex64")
    az2 = c.key("azure-openai", "code-assignment")
    ds = c.key("deepseek", "cli-flag")
    xa = c.key("xai", "toml-key")
    pp = c.key("perplexity", "yaml-key")
    rp = c.key("replicate", "env-file")
    fw = c.key("fireworks", "code-assignment")
    orr = c.key("openrouter", "code-assignment")
    lsk = c.key("langsmith", "env-file")
    gg = c.key("google-ai", "url-query")
    tm = c.key("teams-webhook", "yaml-key")
    aid = c.key("aws", "ci-file", "id")
    asec = c.key("aws", "ci-file", "secret")
    mi3 = c.key("mistral", "properties-file")
    co3 = c.key("cohere", "yaml-nested")
    tg2 = c.key("together", "env-file", "hex64")

    ph_env = c.neg("sk-proj-your-key-here", "placeholder", "placeholder")
    fake = c.neg("sk-proj-" + "0" * 40, "test-fixture-marked-fake", "zeros, in a test named fake")
    bad = c.neg(bad_github(c), "bad-checksum", "wrong CRC32")
    sha_a, sha_b = (c.neg(sha1(c), "hash", "a commit SHA in the changelog") for _ in range(2))
    jw = c.neg(jwt(c, "bot"), "jwt", "a JWT in a test")
    red = c.neg("hf_****************************abcd", "redacted", "masked")
    uid = c.neg(c.uuid(), "uuid", "a queue id")
    cache = c.neg(c.hex(64), "high-entropy-non-secret", "a prompt cache key")
    doc = c.neg("AIzaSy...", "doc-example", "docs ellipsis")
    look = c.neg("gsk_live", "look-alike", "a feature flag name")

    config_v1 = f'''"""Settings for triage-bot."""
import os

OPENAI_API_KEY = "{oa.m}"
MODEL = "gpt-4o-mini"
'''
    config_v2 = '''"""Settings for triage-bot."""
import os

OPENAI_API_KEY = os.environ["OPENAI_API_KEY"]
MODEL = "gpt-4o-mini"
'''
    config_v3 = config_v2 + f'''
# chat notifications (moved from bot/notify.py)
DISCORD_WEBHOOK = "{dc_moved.m}"
'''
    config_v4 = config_v2 + '''
DISCORD_WEBHOOK = os.environ.get("DISCORD_WEBHOOK", "")
'''
    config_v5 = config_v4 + f'''
# cohere rerank, trial key until procurement signs
COHERE_KEY = ("{c1}"
              "{c2}")
'''
    config_v6 = config_v4 + '''
COHERE_KEY = os.environ.get("COHERE_API_KEY", "")
'''
    config_v7 = config_v6 + f'''
AZURE_OPENAI_KEY = os.getenv("AZURE_OPENAI_KEY", "{az2.m}")
FIREWORKS_API_KEY = "{fw.m}"
OPENROUTER_API_KEY = "{orr.m}"
PROMPT_CACHE_KEY = "{cache}"
'''
    config_v8 = config_v6 + f'''
AZURE_OPENAI_KEY = os.getenv("AZURE_OPENAI_KEY", "")
FIREWORKS_API_KEY = os.getenv("FIREWORKS_API_KEY", "")
OPENROUTER_API_KEY = os.getenv("OPENROUTER_API_KEY", "")
PROMPT_CACHE_KEY = "{cache}"
'''
    llm = '''"""The one place that talks to the model."""
from openai import OpenAI

from bot import config

client = OpenAI(api_key=config.OPENAI_API_KEY)


def label(ticket: str) -> str:
    out = client.chat.completions.create(model=config.MODEL, messages=[
        {"role": "system", "content": "Label the ticket: billing, bug, question."},
        {"role": "user", "content": ticket}])
    return out.choices[0].message.content or "question"
'''
    env_v1 = f'''ANTHROPIC_API_KEY={an.m}
COHERE_API_KEY={co.m}
SLACK_WEBHOOK_URL={sl.m}
'''
    env_v2 = env_v1 + f"MISTRAL_API_KEY={mi.m}\n"
    notify_v1 = f'''"""Tell the team about tickets the bot could not label."""
import httpx

DISCORD_WEBHOOK = "{dc.m}"


def post(text: str) -> None:
    httpx.post(DISCORD_WEBHOOK, json={{"content": text}}, timeout=5)
'''
    notify_v2 = '''"""Tell the team about tickets the bot could not label."""
import httpx

from bot.config import DISCORD_WEBHOOK


def post(text: str) -> None:
    httpx.post(DISCORD_WEBHOOK, json={"content": text}, timeout=5)
'''
    run_v1 = f'''#!/bin/sh
# quick manual check against Groq
curl -s https://api.groq.com/openai/v1/models -H "Authorization: Bearer {gq.m}"
'''
    run_v2 = '''#!/bin/sh
# quick manual check against Groq
curl -s https://api.groq.com/openai/v1/models -H "Authorization: Bearer $GROQ_API_KEY"
'''
    run_v3 = run_v2 + f'''python -m bot.eval --provider deepseek --api-key {ds.m}
'''
    run_v4 = run_v2 + '''python -m bot.eval --provider deepseek --api-key "$DEEPSEEK_API_KEY"
'''
    values_v1 = f'''image: ghcr.io/acme/triage-bot:0.3.0
providers:
  mistral:
    model: mistral-small-latest
    apiKey: {mi2.m}
  azure:
    endpoint: https://triage.openai.azure.com
    deployment: gpt-4o-mini
    apiKey: {az.m}
'''
    values_v2 = '''image: ghcr.io/acme/triage-bot:0.4.0
providers:
  mistral:
    model: mistral-small-latest
    existingSecret: triage-bot-mistral
  azure:
    endpoint: https://triage.openai.azure.com
    deployment: gpt-4o-mini
    existingSecret: triage-bot-azure
'''
    values_v3 = values_v2 + f'''rerank:
  cohere:
    model: rerank-english-v3.0
    apiKey: {co3.m}
'''
    values_v4 = values_v2 + '''rerank:
  cohere:
    model: rerank-english-v3.0
    existingSecret: triage-bot-cohere
'''
    setup_v1 = f'''# Setup

1. Copy `.env.example` to `.env`.
2. Put your OpenAI key in it, e.g. `OPENAI_API_KEY={ph_env}`.
3. The shared Hugging Face token for the tokenizer download: `{hf.m}`
'''
    setup_v2 = setup_v1.replace(hf.m, red)
    tests_v1 = f'''from bot import llm

FAKE_KEY = "{fake}"  # fake key for the mocked client
BOT_JWT = "{jw}"


def test_label_defaults_to_question(monkeypatch):
    monkeypatch.setattr(llm.client.chat.completions, "create", lambda **_: None)
'''
    ci_v1 = f'''name: ci
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    env:
      GH_RELEASE_TOKEN: {gh.m}
      AWS_ACCESS_KEY_ID: {aid.m}
      AWS_SECRET_ACCESS_KEY: {asec.m}
    steps:
      - uses: actions/checkout@v4
      - run: pip install -r requirements.txt && pytest -q
'''
    ci_v2 = '''name: ci
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    env:
      GH_RELEASE_TOKEN: ${{ secrets.GH_RELEASE_TOKEN }}
      AWS_ROLE_ARN: arn:aws:iam::123456789012:role/triage-ci
    steps:
      - uses: actions/checkout@v4
      - run: pip install -r requirements.txt && pytest -q
'''
    gw_env = f'''# through the company gateway
KEYSTEAD_KEY={ks.m}
KEYSTEAD_ADMIN_TOKEN={ka.m}
REPLICATE_API_TOKEN={rp.m}
LANGSMITH_API_KEY={lsk.m}
'''
    fixtures_json = f'''{{
  "provider": "together",
  "api_key": "{tg.m}",
  "queue": "{uid}"
}}
'''
    pyproject = f'''[project]
name = "triage-bot"
version = "0.5.0"

[tool.triage.xai]
api_key = "{xa.m}"
'''
    pyproject_v2 = '''[project]
name = "triage-bot"
version = "0.6.0"
'''
    routes_yaml = f'''perplexity_api_key: {pp.m}
teams_webhook: {tm.m}
feature_flags: [{look}]
'''
    props = f'''triage.mistral.api-key={mi3.m}
triage.mistral.model=mistral-small-latest
'''
    gemini_log = f'''2024-05-03 10:11:12 GET https://generativelanguage.googleapis.com/v1beta/models?key={gg.m} 200
2024-05-03 10:11:13 see {doc} for the docs example
'''
    changelog = f'''# Changelog

## 0.5.0
- rerank with Cohere ({sha_a})
- move the webhook to config ({sha_b})
- tokens like {bad} in tests fail their checksum on purpose
'''
    commits: list[Commit] = [
        ("Initial commit", {"README.md": readme(), "requirements.txt": REQS,
                            ".gitignore": GITIGNORE, "bot/__init__.py": ""}),
        ("Add settings", {"bot/config.py": config_v1}),
        ("Label tickets with gpt-4o-mini", {"bot/llm.py": llm}),
        ("Local env for the other providers", {".env": env_v1}),
        ("Tests for the labeller", {"tests/test_llm.py": tests_v1}),
        ("README: how to run", {"README.md": readme("\nTickets arrive from the helpdesk webhook.\n")}),
        ("Add Mistral to .env", {".env": env_v2}),
        ("Oops: remove .env from the repository and ignore it",
         {".env": None, ".gitignore": GITIGNORE + ".env\n"}),
        ("Read the OpenAI key from the environment", {"bot/config.py": config_v2}),
        ("Notify Discord about unlabelled tickets", {"bot/notify.py": notify_v1}),
        ("Bump httpx", {"requirements.txt": REQS.replace("0.27.0", "0.27.2")}),
        ("Move the webhook URL to config", {"bot/config.py": config_v3, "bot/notify.py": notify_v2}),
        ("Webhook from the environment", {"bot/config.py": config_v4}),
        ("Script to check Groq by hand", {"scripts/check.sh": run_v1}),
        ("Helm values for the cluster", {"deploy/values.yaml": values_v1}),
        ("Setup docs", {"docs/setup.md": setup_v1}),
        ("check.sh: key from the environment", {"scripts/check.sh": run_v2}),
        ("Values: keys from existing secrets", {"deploy/values.yaml": values_v2}),
        ("Docs: mask the HF token", {"docs/setup.md": setup_v2}),
        ("Cohere rerank (trial)", {"bot/config.py": config_v5}),
        ("CI workflow", {".github/workflows/ci.yml": ci_v1}),
        ("Cohere key from the environment", {"bot/config.py": config_v6}),
        ("CI: secrets from the repository settings, OIDC for AWS",
         {".github/workflows/ci.yml": ci_v2}),
        ("Gateway env for local runs", {"gateway.env": gw_env}),
        ("Recorded fixture for the together provider", {"tests/fixtures/together.json": fixtures_json}),
        ("Remove gateway.env (keys belong in the vault)", {"gateway.env": None}),
        ("More providers in config", {"bot/config.py": config_v7}),
        ("Providers from the environment", {"bot/config.py": config_v8}),
        ("Drop the together fixture", {"tests/fixtures/together.json": None}),
        ("Eval script for deepseek", {"scripts/check.sh": run_v3}),
        ("check.sh: deepseek key from the environment", {"scripts/check.sh": run_v4}),
        ("pyproject with tool settings", {"pyproject.toml": pyproject}),
        ("pyproject: drop tool.triage", {"pyproject.toml": pyproject_v2}),
        ("Routing config", {"deploy/routes.yaml": routes_yaml}),
        ("Routing config from secrets", {"deploy/routes.yaml": "perplexity_api_key: ${PPLX_API_KEY}\n"
                                         "teams_webhook: ${TEAMS_WEBHOOK}\n"}),
        ("Java sidecar properties", {"sidecar/app.properties": props}),
        ("Delete the Java sidecar", {"sidecar/app.properties": None}),
        ("Debug log of the gemini trial", {"logs/gemini.log": gemini_log}),
        ("Remove debug log", {"logs/gemini.log": None}),
        ("Rerank config in the chart", {"deploy/values.yaml": values_v3}),
        ("Chart: cohere from a secret", {"deploy/values.yaml": values_v4}),
        ("Changelog", {"CHANGELOG.md": changelog}),
        ("Local .env again, by accident (ignored, so forced)", {".env": f"TOGETHER_API_KEY={tg2.m}\n"}),
        ("Remove .env again", {".env": None}),
        ("README: gateway", {"README.md": readme("\nTickets arrive from the helpdesk webhook.\n"
                                                 "\nCalls go through the company gateway.\n")}),
        ("Bump openai", {"requirements.txt": REQS.replace("1.14.0", "1.35.0").replace("0.27.0", "0.27.2")}),
        ("Release 0.6.0", {"CHANGELOG.md": changelog + "\n## 0.6.0\n- keys from the environment only\n"}),
    ]
    return resolve(c, commits)


def _marker_lines(text: str) -> dict[str, tuple[int, ...]]:
    out: dict[str, list[int]] = {}
    for m in MARKER.finditer(text):
        out.setdefault(m.group(1) + m.group(2), []).append(text.count("\n", 0, m.start()) + 1)
    return {k: tuple(v) for k, v in out.items()}


def resolve(c: Corpus, commits: list[Commit]) -> list[dict[str, object]]:
    first_seen: dict[str, tuple[str, tuple[int, ...]]] = {}
    out = []
    for message, files in commits:
        resolved: dict[str, str | None] = {}
        for path, text in files.items():
            if text is None:
                resolved[path] = None
                continue
            for token, lines in _marker_lines(text).items():
                seen = first_seen.setdefault(token, (path, lines))
                assert seen == (path, lines), f"{token} moved in history ({path}): {seen} -> {lines}"
            resolved[path], _ = c.resolve(text, "history", path, first_only=True)
        out.append({"message": message, "files": resolved})
    return out
