#!/usr/bin/env bash
# Load-test the gateway with a model behind Groq.
export GROQ_API_KEY=gsk_x8dawf41HkuMyyIRxokyei\
uNzdssZLx335D8u2BL4cp2xdq9cIUv
# perplexity key for the comparison run (revoked after): 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
export REPLICATE_API_TOKEN="r8_d7KXxQfBP6Bpkc4wX\
egCmt8DMSZAJqLF95OcA"
# fireworks: fw_CLQFJmxyJdPccX3nul6tw9Sp
export RUN_ID=8ffe76cb-80c1-41c1-884a-102913e8d74e
export TRACE_SALT=04c9c736cffea2ee
wrk -t2 -c32 -d60s -s bench/chat.lua https://llm.internal.acme.dev/v1/chat/completions
