#!/usr/bin/env bash
# Rotate provider keys into the gateway. Run from the bastion.
set -euo pipefail

ADMIN="https://llm.internal.acme.dev/admin"
curl -sf -X POST "$ADMIN/reload" -H "Authorization: Bearer ksa_vPXCoukKW48ac0Dd3GpX9y3dS-hwGnhzhIRyALemRNP"

huggingface-cli login --token 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 --add-to-git-credential

python tools/eval_rerank.py --provider cohere --api-key gTqAfiOGVVUhX90ynE4AiUYPGI31vgFeutY7UAqN --sample 200
python tools/eval_chat.py --provider mistral --mistral-api-key "$MISTRAL_API_KEY" --model mistral-small-latest
./bin/bench --provider together --key eee634b6c1b214ae327cf715f611a9daf73a7193a9ceecfe841dd8099368c066 --rps 5

echo "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" | gh auth login --with-token
aws configure set aws_access_key_id ASIA6SUMZLUEMGTDNRKQ --profile llm-ops
aws configure set aws_secret_access_key jnLVYjR74B32XERncJFOtrNijvPhfOzkMQj44n8p --profile llm-ops
replicate-cli --token=r8_sp7ZkbOtDAmggr6DVLGIMfxelBeoaTtRyMuoF predictions list
keystead --server https://llm.internal.acme.dev keys list --api-key ksk_glblmct40BSSCHNxlgGUvmatKK4eP47ang2BuGjj34FYAl

# dry runs
python tools/eval_chat.py --provider openai --api-key "$OPENAI_API_KEY"
python tools/eval_chat.py --provider anthropic --api-key sk-ant-xxxx
python tools/eval_chat.py --provider azure --azure-key=<AZURE_KEY>
python tools/eval_chat.py --seed 5425745324 --run-id 040568ba-11fd-44c8-bfd0-9de7552f22a1
