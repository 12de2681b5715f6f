"""The commented starter config that `keystead init` writes. Every value shown is the default.

Its mock serves names of its own (mock-chat, mock-embedding), never a real model's: a provider
added later for OpenAI must answer gpt-4o-mini, not the mock (issue 12).
"""

CONFIG_TEMPLATE = """\
# keystead configuration. Reference: docs/configuration.md
# Secrets never go in this file: write ${VAR} and keep the value in the environment or in the
# .env file beside this one (keystead init wrote it; .gitignore covers it).

server:
  host: 127.0.0.1          # 0.0.0.0 to listen on every interface
  port: 8080
  workers: 1               # processes; each holds its own in-memory key table
  max_body_bytes: 8388608  # 8 MiB; larger requests get 413 request_too_large
  upstream_timeout_s: 600  # longest silence from a provider before 504
  connect_timeout_s: 10
  shutdown_grace_s: 30     # on SIGTERM, how long in-flight requests may finish

database:
  # The SQLite file keystead.db beside this file, unless KEYSTEAD_DATABASE_URL is set (e.g.
  # postgresql://keystead@db.internal/keystead): the ${...} below is what makes it count.
  url: ${KEYSTEAD_DATABASE_URL:-sqlite:///keystead.db}

vault:
  master_key: ${KEYSTEAD_MASTER_KEY}   # 32 random bytes, base64; or master_key_file: PATH

admin:
  token: ${KEYSTEAD_ADMIN_TOKEN}       # guards /admin/... and `keystead --server`

keys:
  # Names must match keys.name_pattern, a regular expression; the default is
  # <env>-<service>-<purpose>[-NN], e.g. prod-webhook-bot-01. keys.name_rule is what someone
  # who breaks it is shown. See docs/configuration.md.
  environments: [dev, staging, prod]

providers:
  # The built-in mock speaks OpenAI's wire format, to try keystead before you have a provider
  # account: ask for model mock-chat or mock-embedding. Its names are its own, so it never
  # answers a model a real provider serves. Delete it when you no longer need it.
  mock:
    type: mock
    models: [mock-chat, mock-embedding]
  # Providers added with `keystead providers add` live in the database, not here. A provider
  # that lists no models serves its vendor's: openai gpt-*, o1*, o3*, o4*, chatgpt-*,
  # text-embedding-*; anthropic claude-*; gemini gemini-*; azure its deployments' models.
  # When two providers claim a name, `keystead providers list` says which one answers it.
  # openai:
  #   type: openai
  #   base_url: https://api.openai.com/v1
  #   api_key: ${OPENAI_API_KEY}
  #   # models: [gpt-4o-mini, gpt-4o]     # only these; default: OpenAI's models
  # azure:
  #   type: azure
  #   base_url: https://YOUR-RESOURCE.openai.azure.com
  #   api_key: ${AZURE_OPENAI_API_KEY}
  #   api_version: 2024-10-21
  #   deployments: {gpt-4o: my-gpt4o-deployment}   # it serves these models
  # local:
  #   type: openai-compatible             # vLLM, Ollama, llama.cpp
  #   base_url: http://localhost:11434/v1
  #   models: ["llama*", "qwen*"]

# Prices override or add to the built-in table (USD per million tokens).
# prices:
#   my-finetune:
#     input_per_mtok: 0.30
#     output_per_mtok: 1.20
#     cached_input_per_mtok: 0.15

usage:
  flush_interval_s: 1.0    # the ledger is written in batches off the request path
  batch_size: 500

logging:
  level: info              # one JSON line per request on stderr
  requests: true

# Watching it (docs/monitoring.md): Prometheus metrics are on GET /metrics already.
# metrics:
#   token: ${METRICS_TOKEN}          # scrapes then send Authorization: Bearer <token>
# alerts:                            # budgets, spend spikes, 401 bursts, error spikes, ...
#   channels:
#     oncall:
#       type: slack
#       webhook_url: ${ALERTS_SLACK_URL}
# checks:
#   every: 5m                        # call every provider key and route, once per period
"""
