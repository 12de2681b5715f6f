"""llm-gateway-chart (Helm) and ai-platform-infra (Terraform)."""

from __future__ import annotations

import base64

from corpus_core import Corpus, fill
from neg_helpers import sha256

H = "llm-gateway-chart"
T = "ai-platform-infra"


def build(c: Corpus) -> None:
    chart(c)
    values(c)
    values_prod(c)
    templates(c)
    tf_variables(c)
    tf_main(c)
    tfvars(c)
    tf_lock(c)


def chart(c: Corpus) -> None:
    c.file(f"{H}/Chart.yaml", '''apiVersion: v2
name: llm-gateway
description: LLM gateway and its provider credentials
type: application
version: 0.7.3
appVersion: "2.4.1"
dependencies:
  - name: redis
    version: 19.6.1
    repository: https://charts.bitnami.com/bitnami
''')
    c.file(f"{H}/Chart.lock", fill('''dependencies:
- name: redis
  repository: https://charts.bitnami.com/bitnami
  version: 19.6.1
digest: sha256:<<d>>
generated: "2024-07-02T10:41:17.519284+02:00"
''', d=c.neg(sha256(c), "hash", "Chart.lock digest")))


def values(c: Corpus) -> None:
    co = c.key("cohere", "helm-values")
    mi = c.key("mistral", "helm-values")
    az = c.key("azure-openai", "helm-values")
    tg = c.key("together", "helm-values", "hex64")
    oa = c.key("openai", "helm-values")
    sl = c.key("slack-webhook", "helm-values")
    text = fill('''# Default values for llm-gateway.
replicaCount: 2

image:
  repository: ghcr.io/acme/llm-gateway
  tag: ""
  digest: sha256:<<dig>>

podAnnotations:
  checksum/config: <<cks>>

providers:
  openai:
    enabled: true
    baseUrl: https://api.openai.com/v1
    apiKey: "<<oa>>"
  cohere:
    enabled: true
    # rerank only
    models: [rerank-english-v3.0, embed-english-v3.0]
    apiKey: <<co>>
  mistral:
    enabled: true
    models:
      - mistral-large-latest
      - codestral-latest
    credentials:
      apiKey: <<mi>>
  azure:
    enabled: true
    endpoint: https://gw-weu.openai.azure.com
    deployment: gpt-4o
    apiVersion: "2024-06-01"
    apiKey: "<<az>>"
  together:
    enabled: false
    secret:
      key: <<tg>>
  anthropic:
    enabled: true
    existingSecret: llm-provider-keys
    existingSecretKey: anthropic-api-key
    apiKey: ""

alerting:
  slack:
    channel: "#llm-gateway"
    webhookUrl: <<sl>>

resources:
  limits:
    cpu: "1"
    memory: 512Mi
''', oa=oa.m, co=co.m, mi=mi.m, az=az.m, tg=tg.m, sl=sl.m,
        dig=c.neg(sha256(c), "hash", "image digest"),
        cks=c.neg(sha256(c), "hash", "config checksum annotation"))
    c.file(f"{H}/values.yaml", text)


def values_prod(c: Corpus) -> None:
    mi = c.negkey("changeme", "placeholder", "changeme")
    ks = c.negkey("${KEYSTEAD_MASTER_KEY}", "placeholder", "substituted at deploy")
    dc = c.key("discord-webhook", "helm-values")
    text = fill('''# Production overrides (rendered by Argo CD from the infra repo)
replicaCount: 6

keystead:
  enabled: true
  vault:
    masterKey: "<<ks>>"
  admin:
    existingSecret: keystead-admin

providers:
  cohere:
    apiKey: <<co>>
  mistral:
    credentials:
      apiKey: "<<mi>>"
  azure:
    endpoint: https://gw-prod-eus.openai.azure.com
    apiKey: <<az>>
    # secondary region, failover only
    secondary:
      endpoint: https://gw-prod-wus.openai.azure.com
      apiKey: <<az2>>
  groq:
    enabled: true
    apiKey: <<gq>>

alerting:
  discord:
    webhookUrl: <<dc>>
  pagerduty:
    routingKey: <<pd>>
''', mi=mi.m, ks=ks.m, dc=dc.m,
        co=c.neg("vault:secret/llm/cohere#api_key", "placeholder", "a vault reference"),
        az=c.neg("${AZURE_OPENAI_API_KEY}", "placeholder", "substituted at deploy"),
        gq=c.neg("gsk_" + "x" * 52, "placeholder", "x's at the right length"),
        az2=c.neg("REPLACE_ME", "placeholder", "placeholder"),
        pd=c.neg("${PAGERDUTY_ROUTING_KEY}", "placeholder", "substituted at deploy"))
    c.file(f"{H}/values-prod.yaml", text)


def templates(c: Corpus) -> None:
    c.file(f"{H}/templates/secret.yaml", '''apiVersion: v1
kind: Secret
metadata:
  name: {{ include "llm-gateway.fullname" . }}-providers
type: Opaque
stringData:
  {{- with .Values.providers }}
  OPENAI_API_KEY: {{ .openai.apiKey | quote }}
  COHERE_API_KEY: {{ .cohere.apiKey | quote }}
  MISTRAL_API_KEY: {{ .mistral.credentials.apiKey | quote }}
  AZURE_OPENAI_API_KEY: {{ .azure.apiKey | quote }}
  {{- end }}
''')
    lk = c.key("cohere", "yaml-nested")
    text = fill('''apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "llm-gateway.fullname" . }}-routes
data:
  routes.yaml: |
    routes:
      rerank:
        provider: cohere
        # inline key for the canary only, TODO move to the secret
        cohere:
          timeout: 10s
          apiKey: <<lk>>
      chat:
        provider: openai
        fallback: [azure, mistral]
        cacheKey: "<<ck>>"
''', lk=lk.m, ck=c.neg("{{ .Release.Name }}-" + c.hex(12), "random-id", "a cache key template"))
    c.file(f"{H}/templates/configmap-routes.yaml", text)


def tf_variables(c: Corpus) -> None:
    oa = c.key("openai", "terraform")
    az = c.key("azure-openai", "terraform")
    mi = c.negkey("x" * 32, "placeholder", "32 x's, Mistral's length")
    dc = c.key("discord-webhook", "terraform")
    text = fill('''variable "location" {
  type    = string
  default = "westeurope"
}

variable "openai_api_key" {
  description = "OpenAI key for the batch summariser"
  type        = string
  sensitive   = true
  default     = "<<oa>>"
}

variable "azure_openai_key" {
  type      = string
  sensitive = true
  default   = "<<az>>"
}

variable "mistral_api_key" {
  type      = string
  sensitive = true
  default   = "<<mi>>"
}

variable "cohere_api_key" {
  type      = string
  sensitive = true
  # no default: set TF_VAR_cohere_api_key
}

variable "alerts_webhook" {
  type    = string
  default = "<<dc>>"
}

variable "tenant_id" {
  type    = string
  default = "<<tenant>>"
}

variable "state_lock_id" {
  type    = string
  default = "<<lock>>"
}
''', oa=oa.m, az=az.m, mi=mi.m, dc=dc.m,
        tenant=c.neg(c.uuid(), "uuid", "Azure tenant id"),
        lock=c.neg(c.uuid(), "uuid", "a lock id"))
    c.file(f"{T}/variables.tf", text)


def tf_main(c: Corpus) -> None:
    kid = c.key("aws", "terraform", "id")
    sec = c.key("aws", "terraform", "secret")
    mi = c.negkey("${var.mistral_api_key}", "placeholder", "terraform interpolation")
    an = c.key("anthropic", "terraform")
    gh = c.key("github", "terraform", "ghp")
    text = fill('''terraform {
  required_providers {
    aws     = { source = "hashicorp/aws", version = "~> 5.58" }
    azurerm = { source = "hashicorp/azurerm", version = "~> 3.112" }
    github  = { source = "integrations/github", version = "~> 6.2" }
  }
}

provider "aws" {
  region     = "eu-west-1"
  access_key = "<<kid>>"
  secret_key = "<<sec>>"
}

provider "azurerm" {
  features {}
  subscription_id = "<<sub>>"
}

provider "github" {
  owner = "acme"
  token = "<<gh>>"
}

resource "aws_secretsmanager_secret" "llm" {
  name = "prod/llm/providers"
}

resource "aws_secretsmanager_secret_version" "llm" {
  secret_id = aws_secretsmanager_secret.llm.id
  secret_string = jsonencode({
    MISTRAL_API_KEY   = "<<mi>>"
    ANTHROPIC_API_KEY = "<<an>>"
    OPENAI_API_KEY    = var.openai_api_key
  })
}

resource "azurerm_cognitive_account" "openai" {
  name                = "gw-weu"
  location            = var.location
  resource_group_name = "rg-llm"
  kind                = "OpenAI"
  sku_name            = "S0"
  custom_subdomain_name = "gw-weu"
}

output "azure_openai_key" {
  value     = azurerm_cognitive_account.openai.primary_access_key
  sensitive = true
}
''', kid=kid.m, sec=sec.m, mi=mi.m, an=an.m, gh=gh.m,
        sub=c.neg(c.uuid(), "uuid", "Azure subscription id"))
    c.file(f"{T}/main.tf", text)


def tfvars(c: Corpus) -> None:
    co = c.negkey("<set in terraform cloud>", "placeholder", "placeholder")
    tm = c.key("teams-webhook", "terraform")
    text = fill('''location        = "westeurope"
cohere_api_key  = "<<co>>"
azure_openai_key = "<<az>>"
together_api_key = "<<tg>>"
alerts_webhook  = "<<tm>>"
github_app_installation_id = "<<inst>>"
openai_api_key  = "<<ph>>"
''', co=co.m, tm=tm.m,
        az=c.neg("", "placeholder", "empty: set with TF_VAR_azure_openai_key"),
        tg=c.neg("REPLACE_WITH_TOGETHER_KEY", "placeholder", "words"),
        inst=c.neg("51234987", "random-id", "an installation id"),
        ph=c.neg("TODO", "placeholder", "placeholder"))
    c.file(f"{T}/prod.auto.tfvars", text)


def tf_lock(c: Corpus) -> None:
    parts = ["# This file is maintained automatically by \"terraform init\".\n"
             "# Manual edits may be lost in future updates.\n"]
    for name, version in (("hashicorp/aws", "5.58.0"), ("hashicorp/azurerm", "3.112.0"),
                          ("integrations/github", "6.2.3")):
        h1 = c.neg("h1:" + base64.b64encode(c.rng.randbytes(32)).decode(), "hash",
                   "terraform provider h1: hash")
        zh = [c.neg("zh:" + sha256(c), "hash", "terraform provider zh: hash") for _ in range(3)]
        zh_lines = "\n".join(f'    "{z}",' for z in zh)
        parts.append(f'''provider "registry.terraform.io/{name}" {{
  version     = "{version}"
  constraints = "~> {version.rsplit('.', 1)[0]}"
  hashes = [
    "{h1}",
{zh_lines}
  ]
}}
''')
    c.file(f"{T}/.terraform.lock.hcl", "\n".join(parts))
