#!/bin/sh
# Mirror model repos and the prompt library into the air-gapped cluster.
set -eu

git clone https://x-access-token:ghs_B5I5pEItmFjbAzH5uThnKGP4bW8uGH3PGlpr@github.com/acme/prompt-library.git /srv/mirror/prompts
git clone https://ml-bot: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@huggingface.co/acme/ticket-summaries /srv/mirror/models/ticket-summaries
git -C /srv/mirror/tools remote set-url origin https://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@github.com/acme/llm-tools.git

# the eval harness speaks OpenAI; point it at the gateway (basic auth on the proxy)
export OPENAI_BASE_URL=https://eval:ksk_mnrfniovqtd79THE8iaq1Kkcx21d7fZQG6Tp9ywm2bQYVp@llm-proxy.internal.acme.dev/v1
export OPENROUTER_PROXY=https://router: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@egress.internal.acme.dev:8443
export PIP_INDEX_URL=https://__token__:${PYPI_TOKEN}@pypi.internal.acme.dev/simple
git clone https://<token>@github.com/acme/llm-tools.git
