"""platform-ops: shell scripts, runbooks and logs of the platform team."""

from __future__ import annotations

from corpus_core import B62, Corpus, fill
from neg_helpers import bad_github, jwt, sha1

R = "platform-ops"


def build(c: Corpus) -> None:
    smoke(c)
    rotate(c)
    mirror(c)
    runbook(c)
    postmortem(c)
    gateway_log(c)
    access_log(c)
    cli_session(c)


def smoke(c: Corpus) -> None:
    oa = c.key("openai", "http-header")
    an = c.key("anthropic", "http-header")
    az = c.key("azure-openai", "http-header")
    co = c.key("cohere", "http-header")
    mi = c.key("mistral", "line-continuation")
    m1, m2 = mi.split(14)
    gg = c.key("google-ai", "url-query")
    ks = c.key("keystead", "http-header", "kst")
    text = fill('''#!/usr/bin/env bash
# Smoke test every provider after a rotation. Usage: ./smoke.sh [provider]
set -euo pipefail

PROMPT='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"ping"}],"max_tokens":1}'

curl -sS https://api.openai.com/v1/chat/completions -H "Authorization: Bearer <<oa>>" -H "Content-Type: application/json" -d "$PROMPT"

curl -sS https://api.anthropic.com/v1/messages \\
  -H "x-api-key: <<an>>" \\
  -H "anthropic-version: 2023-06-01" \\
  -H "content-type: application/json" \\
  -d '{"model":"claude-3-5-haiku-20241022","max_tokens":1,"messages":[{"role":"user","content":"ping"}]}'

curl -sS "https://ops-weu.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01" \\
  -H "api-key: <<az>>" -d "$PROMPT"

curl -sS https://api.cohere.com/v1/rerank -H 'Authorization: BEARER <<co>>' \\
  -d '{"query":"ping","documents":["pong"],"model":"rerank-english-v3.0"}'

MISTRAL_KEY="<<m1>>\\
<<m2>>"
curl -sS https://api.mistral.ai/v1/models -H "Authorization: Bearer $MISTRAL_KEY"

curl -sS "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-flash:generateContent?key=<<gg>>" \\
  -H 'Content-Type: application/json' -d '{"contents":[{"parts":[{"text":"ping"}]}]}'

# through the gateway with a short-lived token (minted for this script, 15 minutes)
curl -sS https://llm.internal.acme.dev/v1/models -H "Authorization: Bearer <<ks>>"

# examples from the providers' docs, kept for reference
# curl https://api.openai.com/v1/models -H "Authorization: Bearer $OPENAI_API_KEY"
# curl https://api.deepseek.com/chat/completions -H "Authorization: Bearer <<doc>>"
curl -sS https://api.together.xyz/v1/models -H "Authorization: Bearer <<ph>>"
curl -sS -H "X-Request-Id: <<rid>>" -H "Idempotency-Key: <<idem>>" https://llm.internal.acme.dev/healthz
''', oa=oa.m, an=an.m, az=az.m, co=co.m, m1=m1, m2=m2, gg=gg.m, ks=ks.m,
        doc=c.neg("<DeepSeek API Key>", "doc-example", "DeepSeek's docs placeholder"),
        ph=c.neg("${TOGETHER_API_KEY}", "placeholder", "shell variable"),
        rid=c.neg(c.uuid(), "uuid", "a request id"),
        idem=c.neg(c.hex(32), "high-entropy-non-secret", "an idempotency key: a random request id"))
    c.file(f"{R}/scripts/smoke.sh", text)


def rotate(c: Corpus) -> None:
    ka = c.key("keystead", "http-header", "ksa")
    hf = c.key("huggingface", "cli-flag")
    co = c.key("cohere", "cli-flag")
    mi = c.negkey("$MISTRAL_API_KEY", "placeholder", "shell variable")
    gh = c.key("github", "cli-flag", "github_pat")
    aws_id = c.key("aws", "cli-flag", "id")
    aws_sec = c.key("aws", "cli-flag", "secret")
    tg = c.key("together", "cli-flag", "hex64")
    rp = c.key("replicate", "cli-flag")
    ks = c.key("keystead", "cli-flag", "ksk")
    text = fill('''#!/usr/bin/env bash
# Rotate provider keys into the gateway. Run from the bastion.
set -euo pipefail

ADMIN="https://llm.internal.acme.dev/admin"
curl -sf -X POST "$ADMIN/reload" -H "Authorization: Bearer <<ka>>"

huggingface-cli login --token <<hf>> --add-to-git-credential

python tools/eval_rerank.py --provider cohere --api-key <<co>> --sample 200
python tools/eval_chat.py --provider mistral --mistral-api-key "<<mi>>" --model mistral-small-latest
./bin/bench --provider together --key <<tg>> --rps 5

echo "<<gh>>" | gh auth login --with-token
aws configure set aws_access_key_id <<aid>> --profile llm-ops
aws configure set aws_secret_access_key <<asec>> --profile llm-ops
replicate-cli --token=<<rp>> predictions list
keystead --server https://llm.internal.acme.dev keys list --api-key <<ks>>

# dry runs
python tools/eval_chat.py --provider openai --api-key "$OPENAI_API_KEY"
python tools/eval_chat.py --provider anthropic --api-key <<ph>>
python tools/eval_chat.py --provider azure --azure-key=<<ph2>>
python tools/eval_chat.py --seed <<seed>> --run-id <<run>>
''', ka=ka.m, hf=hf.m, co=co.m, mi=mi.m, gh=gh.m, aid=aws_id.m, asec=aws_sec.m,
        tg=tg.m, rp=rp.m, ks=ks.m,
        ph=c.neg("sk-ant-xxxx", "placeholder", "x's"),
        ph2=c.neg("<AZURE_KEY>", "placeholder", "angle brackets"),
        seed=c.neg(str(c.rng.randint(10**9, 10**10)), "random-id", "a seed"),
        run=c.neg(c.uuid(), "uuid", "a run id"))
    c.file(f"{R}/scripts/rotate_keys.sh", text)


def mirror(c: Corpus) -> None:
    gh = c.key("github", "url-userinfo", "ghs")
    hf = c.key("huggingface", "url-userinfo")
    ks = c.key("keystead", "url-userinfo", "ksk")
    orr = c.key("openrouter", "url-userinfo")
    gh2 = c.key("github", "url-userinfo", "ghp")
    text = fill('''#!/bin/sh
# Mirror model repos and the prompt library into the air-gapped cluster.
set -eu

git clone https://x-access-token:<<gh>>@github.com/acme/prompt-library.git /srv/mirror/prompts
git clone https://ml-bot:<<hf>>@huggingface.co/acme/ticket-summaries /srv/mirror/models/ticket-summaries
git -C /srv/mirror/tools remote set-url origin https://<<gh2>>@github.com/acme/llm-tools.git

# the eval harness speaks OpenAI; point it at the gateway (basic auth on the proxy)
export OPENAI_BASE_URL=https://eval:<<ks>>@llm-proxy.internal.acme.dev/v1
export OPENROUTER_PROXY=https://router:<<orr>>@egress.internal.acme.dev:8443
export PIP_INDEX_URL=https://__token__:<<ph>>@pypi.internal.acme.dev/simple
git clone https://<<doc>>@github.com/acme/llm-tools.git
''', gh=gh.m, hf=hf.m, ks=ks.m, orr=orr.m, gh2=gh2.m,
        ph=c.neg("${PYPI_TOKEN}", "placeholder", "shell variable"),
        doc=c.neg("<token>", "placeholder", "angle brackets"))
    c.file(f"{R}/scripts/mirror.sh", text)


def runbook(c: Corpus) -> None:
    oa = c.key("openai", "markdown")
    tg = c.key("together", "markdown", "tgp")
    ks = c.key("keystead", "markdown", "master")
    dc = c.key("discord-webhook", "markdown")
    ls = c.key("langsmith", "markdown")
    text = fill('''# Runbook: LLM provider outage

## 1. Confirm

Check the status pages, then call the provider directly from the bastion with the break-glass key:

| provider | break-glass key | owner |
|---|---|---|
| OpenAI | `<<oa>>` | @maria |
| Together | `<<tg>>` | @jonas |
| Azure OpenAI (weu) | `<<az>>` | @li |
| LangSmith | `<<ls>>` | @maria |
| Anthropic | `<<red>>` (in 1Password) | @li |

## 2. Fail over

Set the route's primary to the healthy provider (`keystead routes update ...`). If the gateway
itself must be restored, the vault's master key is in the safe; the DR copy is:

    KEYSTEAD_MASTER_KEY=<<ks>>

## 3. Tell people

Post in #incidents. The bot webhook for the status channel: <<dc>>

## Reference

Key formats, from the providers' docs: OpenAI keys start `sk-proj-`, e.g. `<<doc1>>`; AWS's
documentation example is `<<doc2>>` / `<<doc3>>`.
''', oa=oa.m, tg=tg.m, ls=ls.m, ks=ks.m, dc=dc.m,
        az=c.neg("in Key Vault `kv-llm-weu`, secret `azure-openai-key`", "placeholder", "a pointer"),
        red=c.neg("sk-ant-...Yw7Q", "redacted", "first and last characters only"),
        doc1=c.neg("sk-proj-abc123...", "doc-example", "a docs-style example"),
        doc2=c.neg("AKIAIOSFODNN7EXAMPLE", "doc-example", "AWS's documentation access key id"),
        doc3=c.neg("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "doc-example",
                   "AWS's documentation secret key"))
    c.file(f"{R}/runbooks/provider-outage.md", text)


def postmortem(c: Corpus) -> None:
    gh = c.key("github", "markdown", "ghp")
    xa = c.key("xai", "markdown")
    an = c.key("anthropic", "line-continuation")
    a1, a2 = an.split(64)
    text = fill('''# Postmortem 2024-06-11: leaked xAI key

**Summary.** A developer pasted a key into a public issue. The key was revoked 41 minutes later.

**Timeline (UTC)**

- 09:02 key posted in acme/chat-web#212: `<<xa>>`
- 09:31 GitHub secret scanning alert (token `<<gh>>` also found in the same paste)
- 09:43 key revoked; new key issued, fingerprint `<<fp>>`

**Why the scanner missed the Anthropic key in the same paste.** It was wrapped by the mail client:

    > ANTHROPIC_API_KEY=<<a1>>
    > <<a2>>

**Not secrets** (listed so nobody rotates them again): the request id `<<rid>>`, the commit
`<<sha>>`, and the key hash shown by the dashboard `<<kh>>`. GitHub tokens like
`<<bad>>` in the test data fail their checksum and are not real.
''', xa=xa.m, gh=gh.m, a1=a1, a2=a2,
        fp=c.neg("SHA256:" + c.b64url(43), "hash", "a key fingerprint"),
        rid=c.neg("req_" + c.s(B62, 24), "random-id", "a request id"),
        sha=c.neg(sha1(c), "hash", "a commit SHA"),
        kh=c.neg(c.hex(64), "hash", "the stored hash of a key"),
        bad=c.neg(bad_github(c), "bad-checksum", "a ghp_ shape with a wrong CRC32"))
    c.file(f"{R}/runbooks/postmortem-2024-06-11.md", text)


def gateway_log(c: Corpus) -> None:
    rows: list[str] = []
    ts = 0

    def t() -> str:
        nonlocal ts
        ts += c.rng.randint(1, 900)
        return f"2024-06-12T08:{ts // 60000 % 60:02d}:{ts // 1000 % 60:02d}.{ts % 1000:03d}Z"

    def neutral() -> str:
        return (f"{t()} INFO  http request_id={c.neg(c.uuid(), 'uuid', 'request id')} "
                f"route=chat status=200 latency_ms={c.rng.randint(80, 4000)} "
                f"trace_id={c.neg(c.hex(32), 'random-id', 'a W3C trace id')}")

    hdr = [c.key("openai", "http-header"), c.key("groq", "http-header"),
           c.key("deepseek", "http-header"), c.key("mistral", "http-header"),
           c.key("perplexity", "http-header"), c.key("fireworks", "http-header"),
           c.key("openrouter", "http-header")]
    logl = [c.key("cohere", "log-line"), c.key("azure-openai", "log-line"),
            c.key("anthropic", "log-line"), c.key("together", "log-line", "hex64"),
            c.key("mistral", "log-line"), c.key("keystead", "log-line", "ksk"),
            c.key("slack-webhook", "log-line"), c.key("teams-webhook", "log-line")]
    url = [c.key("google-ai", "url-query"), c.key("azure-openai", "url-query"),
           c.key("keystead", "url-query", "kst"), c.key("langsmith", "url-query"),
           c.key("cohere", "url-query")]
    rows.append(f"{t()} INFO  keystead.serve listening on 0.0.0.0:8080 workers=2")
    for i, k in enumerate(hdr):
        rows.append(neutral())
        name = ["Authorization", "authorization", "AUTHORIZATION"][i % 3]
        rows.append(f"{t()} DEBUG upstream request POST {['https://api.openai.com/v1/chat/completions', 'https://api.groq.com/openai/v1/chat/completions', 'https://api.deepseek.com/chat/completions', 'https://api.mistral.ai/v1/chat/completions', 'https://api.perplexity.ai/chat/completions', 'https://api.fireworks.ai/inference/v1/chat/completions', 'https://openrouter.ai/api/v1/chat/completions'][i]} "
                    f"headers={{'{name}': 'Bearer {k.m}', 'content-type': 'application/json'}}")
    texts = [
        "WARN  provider=cohere rerank failed status=401 key={} (rotated?)",
        "ERROR provider=azure-weu status=401 api_key={} message=\"Access denied due to invalid subscription key\"",
        "DEBUG anthropic client init api_key='{}' max_retries=2",
        "INFO  provider together: using key {} for model meta-llama/Llama-3-70b-chat-hf",
        "WARN  mistral api_key={} is close to its monthly limit (91%)",
        "WARN  client sent a keystead key in the body: {} (key owner notified)",
        "INFO  alert sent to {} status=200",
        "INFO  alert sent to {} status=200",
    ]
    for k, tmpl in zip(logl, texts, strict=True):
        rows.append(neutral())
        rows.append(f"{t()} " + tmpl.format(k.m))
    for k, tmpl in zip(url, [
        "GET https://generativelanguage.googleapis.com/v1beta/models?key={} 200",
        "POST https://ops-weu.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01&api-key={} 200",
        "GET /v1/models?token={} 200 (browser, EventSource cannot send headers)",
        "POST https://api.smith.langchain.com/runs/batch?api_key={} 202",
        "GET /proxy/cohere/v1/models?apiKey={}&page=2 200",
    ], strict=True):
        rows.append(neutral())
        rows.append(f"{t()} INFO  http " + tmpl.format(k.m))
    # negatives that look like the lines above
    rows.append(f"{t()} DEBUG upstream request headers={{'Authorization': 'Bearer "
                + c.neg("sk-proj-...Wq2e", "redacted", "masked by the logger") + "'}")
    rows.append(f"{t()} DEBUG upstream request headers={{'authorization': '"
                + c.neg("[REDACTED]", "redacted", "masked") + "'}")
    rows.append(f"{t()} INFO  key created key_id=" + c.neg(c.s("abcdefghijklmnopqrstuvwxyz234567", 8),
                                                          "random-id", "a keystead public key id")
                + " prefix=" + c.neg("ksk_" + c.s("abcdefghijklmnopqrstuvwxyz234567", 8) + "...",
                                     "redacted", "a keystead key shown by its public part"))
    rows.append(f"{t()} INFO  session=" + c.neg(c.b64url(43), "high-entropy-non-secret",
                                                "a session id in an access log")
                + " cache_key=" + c.neg(c.hex(64), "high-entropy-non-secret", "a cache key")
                + " hit=true")
    rows.append(f"{t()} INFO  callback GET /oauth/callback?code=" + c.neg("<code>", "placeholder", "placeholder")
                + "&state=" + c.neg(c.b64url(32), "high-entropy-non-secret", "OAuth state nonce"))
    rows.append(f"{t()} WARN  rejected token " + c.neg(bad_github(c, "ghp"), "bad-checksum",
                                                      "a token that fails GitHub's CRC32"))
    rows.append(f"{t()} DEBUG id_token=" + c.neg(jwt(c, "user-8812"), "jwt", "an OIDC id token"))
    rows.append(f"{t()} INFO  provider=cohere key=" + c.neg("c0here-key-rotated-see-vault", "placeholder",
                                                            "not a key, a note"))
    for _ in range(6):
        rows.append(neutral())
    c.file(f"{R}/logs/gateway-2024-06-12.log", "\n".join(rows) + "\n")


def access_log(c: Corpus) -> None:
    rows = []
    for i in range(14):
        ip = f"10.20.{c.rng.randint(0, 255)}.{c.rng.randint(1, 254)}"
        ts = f"12/Jun/2024:09:{i * 3:02d}:{c.rng.randint(0, 59):02d} +0000"
        path = c.rng.choice(["/v1/chat/completions", "/v1/embeddings", "/v1/models"])
        rid = c.neg(c.uuid(), "uuid", "request id") if i % 2 else c.neg(c.hex(32), "random-id", "request id")
        rows.append(f'{ip} - - [{ts}] "POST {path} HTTP/1.1" 200 {c.rng.randint(200, 9000)} "-" '
                    f'"python-httpx/0.27.0" rid={rid}')
    special = [
        ("openai", "url-query", "GET /v1/models?api_key={} HTTP/1.1"),
        ("anthropic", "url-query", "GET /v1/messages/stream?x-api-key={} HTTP/1.1"),
        ("groq", "url-query", "GET /proxy/groq/models?key={}&format=json HTTP/1.1"),
        ("huggingface", "url-query", "GET /api/models/acme/ticket-summaries?token={} HTTP/1.1"),
        ("xai", "url-query", "GET /v1/models?key={} HTTP/1.1"),
    ]
    for n, (prov, place, req) in enumerate(special):
        k = c.key(prov, place)
        rows.insert(2 + n * 2, f'10.20.7.{40 + n} - - [12/Jun/2024:09:{n * 5:02d}:13 +0000] "'
                    + req.format(k.m) + '" 200 512 "-" "curl/8.5.0"')
    rows.append('10.20.7.99 - - [12/Jun/2024:10:01:02 +0000] "GET /v1/models?api_key='
                + c.neg("REDACTED", "redacted", "masked") + ' HTTP/1.1" 401 90 "-" "curl/8.5.0"')
    rows.append('10.20.7.99 - - [12/Jun/2024:10:01:09 +0000] "GET /static/app.js?v='
                + c.neg(c.hex(20), "hash", "a cache-busting hash") + ' HTTP/1.1" 200 88123 "-" "Mozilla/5.0"')
    rows.append('10.20.7.99 - - [12/Jun/2024:10:01:11 +0000] "GET /v1/files?after='
                + c.neg("file-" + c.s(B62, 24), "random-id", "a pagination cursor") + ' HTTP/1.1" 200 44 "-" "curl/8.5.0"')
    c.file(f"{R}/logs/nginx-access.log", "\n".join(rows) + "\n")


def cli_session(c: Corpus) -> None:
    """A terminal transcript pasted into the repo; keys in flags and in output."""
    ks1 = c.key("keystead", "cli-flag", "ksa")
    ks2 = c.key("keystead", "other", "ksk")
    an = c.key("anthropic", "cli-flag")
    oa = c.key("openai", "cli-flag")
    text = fill('''$ keystead --server https://llm.internal.acme.dev --admin-token <<ks1>> keys create prod-billing-batch-01 --budget 50/month
created  prod-billing-batch-01
key      <<ks2>>
         (shown once: store it now)
$ llm -m claude-3.5-sonnet --key <<an>> "summarise the incident"
$ openai --api-key <<oa>> api models.list | head -3
$ keystead keys show prod-billing-batch-01
key_id   <<kid>>
prefix   <<pref>>
created  2024-06-12T09:44:10Z
$ keystead keys create dev-test-smoke-01 --dry-run
key      <<fake>>   (dry run: not a real key)
''', ks1=ks1.m, ks2=ks2.m, an=an.m, oa=oa.m,
        kid=c.neg(c.s("abcdefghijklmnopqrstuvwxyz234567", 8), "random-id", "a public key id"),
        pref=c.neg("ksk_" + c.s("abcdefghijklmnopqrstuvwxyz234567", 8) + "…", "redacted",
                   "the public part of a key"),
        fake=c.neg("ksk_dryrun00" + "0" * 32 + "XXXXXX", "test-fixture-marked-fake",
                   "a dry-run key with no valid checksum"))
    c.file(f"{R}/notes/terminal-2024-06-12.txt", text)
