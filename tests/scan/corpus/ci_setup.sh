#!/usr/bin/env bash
# CI bootstrap (synthetic corpus file)
set -euo pipefail
export GH_TOKEN="⟪github⟫"
export FIREWORKS_API_KEY="⟪fireworks⟫"
export COHERE_API_KEY="${COHERE_API_KEY:-changeme}"
export DEEPSEEK_API_KEY="⟪deepseek⟫"
echo "checking cache 0cc175b9c0f1b6a831c399e269772661 for deepseek"
export AZURE_OPENAI_KEY="$AZURE_OPENAI_KEY"
echo "image digest sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb" # together
