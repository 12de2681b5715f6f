"""llm-gateway-deploy: a keystead deployment (config, .env from `keystead init`, compose, k8s,
clients holding keystead keys and tokens, Alertmanager with webhooks)."""

from __future__ import annotations

from corpus_core import Corpus, fill
from neg_helpers import bad_github, bad_ksk, jwt

R = "llm-gateway-deploy"


def build(c: Corpus) -> None:
    keystead_yaml(c)
    env(c)
    compose(c)
    k8s_secret(c)
    batch_client(c)
    browser_client(c)
    alertmanager(c)
    notify(c)
    netrc_like(c)


def keystead_yaml(c: Corpus) -> None:
    oa = c.key("openai", "yaml-key")
    co = c.key("cohere", "yaml-key")
    text = fill('''# keystead.yaml: written by `keystead init`, edited by platform
server:
  host: 0.0.0.0
  port: 8080
  workers: 2
  trusted_proxies: [10.0.0.0/8]

database:
  url: ${KEYSTEAD_DATABASE_URL:-sqlite:///keystead.db}

redis:
  url: ${KEYSTEAD_REDIS_URL:-}

vault:
  master_key: ${KEYSTEAD_MASTER_KEY}   # 32 random bytes, base64 (44 characters)

admin:
  token: ${KEYSTEAD_ADMIN_TOKEN}
  secret_refs:
    allow_env: [OPENAI_API_KEY, "AZURE_*"]

providers:
  openai:
    type: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    models: [gpt-4o-mini, gpt-4o]
  openai-batch:
    type: openai
    base_url: https://api.openai.com/v1
    api_key: <<oa>>   # refused at start: keystead wants a reference
  cohere:
    type: cohere
    api_key: <<co>>
  azure:
    type: azure
    base_url: https://gw-weu.openai.azure.com
    api_key: env:AZURE_OPENAI_API_KEY
  mistral:
    type: mistral
    api_key: <<ph>>

keys:
  environments: [dev, staging, prod]
  rotate_every: {prod: 30d}
''', oa=oa.m, co=co.m, ph=c.neg("vault:mistral-prod", "placeholder", "a vault reference"))
    c.file(f"{R}/keystead.yaml", text)

    # a second environment's config with YAML keys named for the provider
    mi = c.key("mistral", "yaml-key")
    az = c.key("azure-openai", "yaml-key")
    tg = c.key("together", "yaml-key", "hex64")
    text = fill('''# staging overrides, merged over keystead.yaml by the deploy script
MISTRAL_API_KEY: <<mi>>
AZURE_OPENAI_API_KEY: "<<az>>"
TOGETHER_API_KEY: <<tg>>
OPENAI_API_KEY: ${OPENAI_API_KEY}
COHERE_API_KEY: <<ph>>
''', mi=mi.m, az=az.m, tg=tg.m, ph=c.neg("''", "placeholder", "empty"))
    c.file(f"{R}/env/staging.yaml", text)


def env(c: Corpus) -> None:
    mk = c.key("keystead", "env-file", "master")
    ka = c.key("keystead", "env-file", "ksa")
    oa = c.negkey("sk-proj-...", "placeholder", "ellipsis")
    gh = c.key("github", "env-file", "ghp")
    text = fill('''# keystead secrets. Never commit this file; .gitignore covers it.
# The master key opens the vault: losing it loses every provider key stored there.
KEYSTEAD_MASTER_KEY=<<mk>>
KEYSTEAD_ADMIN_TOKEN=<<ka>>
# Provider keys referenced from keystead.yaml, e.g.:
OPENAI_API_KEY=<<oa>>
GITHUB_TOKEN=<<gh>>
''', mk=mk.m, ka=ka.m, oa=oa.m, gh=gh.m)
    c.file(f"{R}/.env", text)


def compose(c: Corpus) -> None:
    mk = c.key("keystead", "docker-compose", "master")
    az = c.key("azure-openai", "docker-compose")
    text = fill('''services:
  keystead:
    image: ghcr.io/acme/keystead:2.4.1
    command: ["keystead", "serve", "--config", "/etc/keystead/keystead.yaml"]
    ports: ["8080:8080"]
    volumes:
      - ./keystead.yaml:/etc/keystead/keystead.yaml:ro
    environment:
      KEYSTEAD_MASTER_KEY: <<mk>>
      KEYSTEAD_ADMIN_TOKEN: "<<ka>>"
      KEYSTEAD_DATABASE_URL: postgresql://keystead@db/keystead
      ANTHROPIC_API_KEY: <<an>>
      COHERE_API_KEY: <<co>>
      AZURE_OPENAI_API_KEY: <<az>>
      OPENAI_API_KEY: ${OPENAI_API_KEY}
  db:
    image: postgres:16
    environment:
      POSTGRES_HOST_AUTH_METHOD: trust
''', mk=mk.m, az=az.m,
        ka=c.neg("${KEYSTEAD_ADMIN_TOKEN:?}", "placeholder", "compose interpolation"),
        an=c.neg("${ANTHROPIC_API_KEY}", "placeholder", "compose interpolation"),
        co=c.neg("set-in-.env", "placeholder", "words"))
    c.file(f"{R}/docker-compose.yml", text)


def k8s_secret(c: Corpus) -> None:
    mk = c.key("keystead", "yaml-key", "master")
    oa = c.negkey("sk-proj-REPLACE_ME", "placeholder", "words")
    text = fill('''apiVersion: v1
kind: Secret
metadata:
  name: keystead-secrets
  namespace: llm
type: Opaque
stringData:
  KEYSTEAD_MASTER_KEY: <<mk>>
  KEYSTEAD_ADMIN_TOKEN: <<ka>>
  OPENAI_API_KEY: <<oa>>
  ANTHROPIC_API_KEY: <<an>>
---
apiVersion: v1
kind: Secret
metadata:
  name: keystead-secrets-template
type: Opaque
stringData:
  KEYSTEAD_MASTER_KEY: <<ph1>>
  KEYSTEAD_ADMIN_TOKEN: <<ph2>>
''', mk=mk.m, oa=oa.m,
        ka=c.neg("ksa_" + "X" * 43, "placeholder", "X's at the right length"),
        an=c.neg("sk-ant-api03-REPLACE-ME", "placeholder", "words"),
        ph1=c.neg("<generate with: keystead vault rotate-master>", "placeholder", "placeholder"),
        ph2=c.neg("ksa_<fill-me>", "placeholder", "placeholder with the prefix"))
    c.file(f"{R}/k8s/secret.yaml", text)


def batch_client(c: Corpus) -> None:
    k2 = c.key("keystead", "concatenated", "ksk")
    a, b = k2.split(12)
    k3 = c.key("keystead", "code-assignment", "kst")
    text = fill('''"""Nightly batch: summarise the day's tickets through the gateway."""

import os

from openai import OpenAI

GATEWAY = "https://llm.internal.acme.dev/v1"
# prod-billing-batch-01 (budget 50 USD/month)
KEY = os.environ.get("KEYSTEAD_KEY", "<<k1>>")
FALLBACK_KEY = ("<<a>>"
                "<<b>>")
# a 15-minute token minted for the backfill run
BACKFILL_TOKEN = "<<k3>>"
# looks like a key, but its checksum is wrong (typo in a copy): the gateway refuses it
OLD_KEY = "<<bad>>"
EXAMPLE_KEY = "<<ex>>"  # from docs/quickstart.md


def client() -> OpenAI:
    return OpenAI(base_url=GATEWAY, api_key=KEY)
''', a=a, b=b, k3=k3.m,
        k1=c.neg("ksk_" + "0" * 44, "test-fixture-marked-fake", "all zeros, no valid checksum; a local default"),
        bad=c.neg(bad_ksk(c), "bad-checksum", "a ksk_ key whose CRC32 checksum is wrong"),
        ex=c.neg("ksk_...", "doc-example", "ellipsis"))
    c.file(f"{R}/clients/batch_summarise.py", text)


def browser_client(c: Corpus) -> None:
    t1 = c.key("keystead", "code-assignment", "kst")
    t2 = c.key("keystead", "json-key", "kst")
    text = fill('''// Demo page: the backend mints a short-lived token; this one was pasted in for a screenshot.
const TOKEN = "<<t1>>";
const SESSION = "<<jwt>>";

export async function ask(prompt) {
  const res = await fetch("https://llm.internal.acme.dev/v1/chat/completions", {
    method: "POST",
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: prompt }] }),
  });
  return res.json();
}
''', t1=t1.m, jwt=c.neg(jwt(c, "demo-user"), "jwt", "a session JWT of the demo IdP"))
    c.file(f"{R}/demo/ask.js", text)
    text = fill('''{
  "token": "<<t2>>",
  "expires_in": 900,
  "models": ["gpt-4o-mini"],
  "token_id": "<<tid>>"
}
''', t2=t2.m, tid=c.neg(c.hex(12), "random-id", "a token id"))
    c.file(f"{R}/demo/mint-response.json", text)


def alertmanager(c: Corpus) -> None:
    sl = c.key("slack-webhook", "yaml-key")
    sl2 = c.key("slack-webhook", "yaml-nested")
    tm = c.key("teams-webhook", "yaml-nested")
    dc = c.key("discord-webhook", "yaml-nested")
    text = fill('''global:
  resolve_timeout: 5m
  slack_api_url: <<sl>>

route:
  receiver: platform
  routes:
    - matchers: [team="billing"]
      receiver: billing-teams

receivers:
  - name: platform
    slack_configs:
      - channel: "#llm-gateway"
        api_url: <<sl2>>
        send_resolved: true
  - name: billing-teams
    msteams_configs:
      - webhook_url: <<tm>>
  - name: community
    discord_configs:
      - webhook_url: <<dc>>
  - name: example
    slack_configs:
      - api_url: <<doc>>
''', sl=sl.m, sl2=sl2.m, tm=tm.m, dc=dc.m,
        doc=c.neg("https://hooks.slack.com/services/XXXXXXXXX/XXXXXXXXX/XXXXXXXXXXXXXXXXXXXXXXXX",
                  "placeholder", "x's"))
    c.file(f"{R}/monitoring/alertmanager.yml", text)


def notify(c: Corpus) -> None:
    dc = c.key("discord-webhook", "code-assignment")
    tm = c.key("teams-webhook", "code-assignment")
    tm2 = c.key("teams-webhook", "concatenated")
    base, rest = tm2.split(len("https://") + 8)
    text = fill('''"""Post gateway events to chat."""

import httpx

DISCORD_WEBHOOK = "<<dc>>"
TEAMS_WEBHOOK_URL = "<<tm>>"
SLACK_WEBHOOK_URL = "<<sl>>"
TEAMS_BILLING = "<<base>>" + \\
    "<<rest>>"
EXAMPLE_DISCORD = "<<doc>>"


def post(url: str, text: str) -> None:
    httpx.post(url, json={"text": text, "content": text}, timeout=5)
''', dc=dc.m, tm=tm.m, base=base, rest=rest,
        sl=c.neg("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
                 "doc-example", "Slack's documented example"),
        doc=c.neg("https://discord.com/api/webhooks/123456789012345678/abcdefghijklmnopqrstuvwxyz",
                  "doc-example", "a docs-style example with an alphabet token"))
    c.file(f"{R}/tools/notify.py", text)


def netrc_like(c: Corpus) -> None:
    gh = c.key("github", "other", "gho")
    aid = c.key("aws", "other", "id")
    asec = c.key("aws", "other", "secret")
    gh2 = c.key("github", "code-assignment", "ghp")
    text = fill('''# ~/.netrc and ~/.aws/credentials copied into the deploy image by mistake (see INC-331)
machine api.github.com
  login deploy-bot
  password <<gh>>

[llm-deploy]
aws_access_key_id = <<aid>>
aws_secret_access_key = <<asec>>
region = eu-west-1
''', gh=gh.m, aid=aid.m, asec=asec.m)
    c.file(f"{R}/deploy/credentials.txt", text)
    text = fill('''#!/usr/bin/env python3
"""Open the release PR for a new gateway version."""
import os

import requests

TOKEN = os.environ.get("GH_TOKEN") or "<<gh2>>"
SAMPLE_TOKEN = "<<bad>>"  # from the unit test of the changelog parser; checksum does not match
REPO = "acme/llm-gateway-deploy"

requests.post(f"https://api.github.com/repos/{REPO}/pulls",
              headers={"Authorization": f"token {TOKEN}"},
              json={"title": "release", "head": "release", "base": "main"}, timeout=10)
''', gh2=gh2.m, bad=c.neg(bad_github(c, "ghs"), "bad-checksum",
                             "ghs_ shape with a wrong checksum"))
    c.file(f"{R}/tools/release_pr.py", text)
