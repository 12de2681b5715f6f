#!/usr/bin/env bash
# Smoke test every provider after a rotation. Usage: ./smoke.sh [provider]
set -euo pipefail

PROMPT='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"ping"}],"max_tokens":1}'

curl -sS https://api.openai.com/v1/chat/completions -H "Authorization: Bearer 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" -H "Content-Type: application/json" -d "$PROMPT"

curl -sS https://api.anthropic.com/v1/messages \
  -H "x-api-key: sk-ant-api03-bXOgIRDG4wKtWK9UbYZ-8RHW4syDcsWa-U0pPLV1WYKRi-4X77Q96ClBVbjnNhPv7iPmuIe1F-XmWMfzraSgoKs1JG9JkAA" \
  -H "anthropic-version: 2023-06-01" \
  -H "content-type: application/json" \
  -d '{"model":"claude-3-5-haiku-20241022","max_tokens":1,"messages":[{"role":"user","content":"ping"}]}'

curl -sS "https://ops-weu.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01" \
  -H "api-key: 7c5d9ee9627c70994c1567248f4309e6" -d "$PROMPT"

curl -sS https://api.cohere.com/v1/rerank -H 'Authorization: BEARER FnGoAu4pvhliwOJCtMh53fuEYAiwf0il80k8EtI2' \
  -d '{"query":"ping","documents":["pong"],"model":"rerank-english-v3.0"}'

MISTRAL_KEY="EUHJHlDHkq3Hho\
xKZi9DJwfcTW4BqctZ"
curl -sS https://api.mistral.ai/v1/models -H "Authorization: Bearer $MISTRAL_KEY"

curl -sS "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-flash:generateContent?key=AIzaPOo9VSzWmhDVfcsol-01xHhreWPG1rb6GMM" \
  -H 'Content-Type: application/json' -d '{"contents":[{"parts":[{"text":"ping"}]}]}'

# through the gateway with a short-lived token (minted for this script, 15 minutes)
curl -sS https://llm.internal.acme.dev/v1/models -H "Authorization: Bearer kst_eyJ0IjoiZTY0NzhlMzM5YWI5IiwiayI6ImlubWZlMm5uIiwiYyI6IjA2NGYwNGYzMDkyYjVmNGMiLCJpIjoxNzE2NTA1NzkwLCJlIjoxNzE2NTA2MDkwLCJtIjpbImdwdC00by1taW5pIl19.2HbsjPhwLTMWV9GzrncN06YcgPyxjURT6mz4zkVVpkA"

# examples from the providers' docs, kept for reference
# curl https://api.openai.com/v1/models -H "Authorization: Bearer $OPENAI_API_KEY"
# curl https://api.deepseek.com/chat/completions -H "Authorization: Bearer <DeepSeek API Key>"
curl -sS https://api.together.xyz/v1/models -H "Authorization: Bearer ${TOGETHER_API_KEY}"
curl -sS -H "X-Request-Id: af87452f-15a7-41e9-9a32-29e8be9c064b" -H "Idempotency-Key: 89a07c6e939fb503b64de61816c83399" https://llm.internal.acme.dev/healthz
