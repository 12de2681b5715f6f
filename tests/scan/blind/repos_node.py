"""chat-web: a Next.js / TypeScript chat front end with a small API layer."""

from __future__ import annotations

import json

from corpus_core import B62, Corpus, fill
from neg_helpers import jwt, png_b64, sri512

R = "chat-web"


def build(c: Corpus) -> None:
    config_ts(c)
    providers_ts(c)
    env_local(c)
    fixtures(c)
    wrangler(c)
    gitlab_ci(c)
    package_lock(c)
    styles(c)


def config_ts(c: Corpus) -> None:
    oa = c.negkey("sk-svcacct-local.dev!", "look-alike", "right prefix, wrong charset and length")
    gg = c.key("google-ai", "code-assignment")
    mi = c.negkey("mistral-dev-key", "placeholder", "words")
    pp = c.key("perplexity", "concatenated")
    p1, p2, p3 = pp.split(5, 29)
    xa = c.key("xai", "concatenated")
    x1, x2 = xa.split(44)
    orr = c.key("openrouter", "concatenated")
    o1, o2 = orr.split(9)
    text = fill('''// Central config. Server-only values must never be imported from a client component.
import "server-only";

export const config = {
  openai: {
    apiKey: process.env.OPENAI_API_KEY ?? "<<oa>>",
    model: process.env.OPENAI_MODEL ?? "gpt-4o-mini",
  },
  gemini: {
    apiKey: process.env.GEMINI_API_KEY || "<<gg>>",
    model: "gemini-1.5-flash",
  },
  mistral: {
    apiKey: process.env.MISTRAL_API_KEY ?? "<<mi>>",
    model: "mistral-small-latest",
  },
  perplexity: {
    // split so the secret scanner stops complaining (it is a low-limit key anyway)
    apiKey: ["<<p1>>", "<<p2>>", "<<p3>>"].join(""),
    model: "<<pm>>",
  },
  xai: {
    apiKey: `<<x1>>` + `<<x2>>`,
    model: "grok-2-latest",
  },
  openrouter: {
    apiKey: `${"<<o1>>"}${"<<o2>>"}`,
    referer: "https://chat.acme.dev",
  },
  session: {
    cookieName: "chat_sid",
    // rotates with every deploy; signs nothing outside this app
    buildId: "<<build>>",
  },
} as const;

export const ANALYTICS_WRITE_KEY = process.env.NEXT_PUBLIC_ANALYTICS_KEY ?? "<<ph>>";
export const DEFAULT_CONVERSATION_ID = "<<conv>>";
''', oa=oa.m, gg=gg.m, mi=mi.m, p1=p1, p2=p2, p3=p3, x1=x1, x2=x2, o1=o1, o2=o2,
        pm=c.neg("pplx-70b-online", "look-alike", "a Perplexity model name, not a key"),
        build=c.neg(c.s(B62, 21), "random-id", "a Next.js build id"),
        ph=c.neg("YOUR_WRITE_KEY", "placeholder", "placeholder"),
        conv=c.neg(c.uuid(), "uuid", "a conversation id"))
    c.file(f"{R}/src/config.ts", text)


def providers_ts(c: Corpus) -> None:
    an = c.key("anthropic", "code-assignment")
    gq = c.key("groq", "code-assignment")
    rp = c.key("replicate", "code-assignment")
    hf = c.key("huggingface", "comment")
    text = fill('''import Anthropic from "@anthropic-ai/sdk";
import Groq from "groq-sdk";
import Replicate from "replicate";

export const anthropic = new Anthropic({
  apiKey: "<<an>>",
});

export const groq = new Groq({ apiKey: "<<gq>>", dangerouslyAllowBrowser: false });

const replicate = new Replicate({
  auth: "<<rp>>",
});

// HF inference was too slow, dropped; token was <<hf>>
// const hf = new HfInference(process.env.HF_TOKEN);

export const MODELS = {
  fast: "<<m1>>",
  reasoning: "claude-3-5-sonnet-20240620",
  image: "<<m2>>",
} as const;

export async function upscale(url: string): Promise<string> {
  const output = await replicate.run(MODELS.image, { input: { image: url } });
  return String(output);
}
''', an=an.m, gq=gq.m, rp=rp.m, hf=hf.m,
        m1=c.neg("gsk-llama3-8b-8192", "look-alike", "a local model alias with a Groq-like prefix"),
        m2=c.neg("nightmareai/real-esrgan:" + c.hex(64), "hash",
                 "a Replicate model version: a sha256, public"))
    c.file(f"{R}/src/lib/providers.ts", text)


def env_local(c: Corpus) -> None:
    rows = [
        ("NEXT_PUBLIC_OPENAI_API_KEY", c.key("openai", "env-file", "proj58")),
        ("GEMINI_API_KEY", c.key("google-ai", "env-file")),
        ("GROQ_API_KEY", c.key("groq", "env-file")),
        ("XAI_API_KEY", c.key("xai", "env-file")),
        ("PERPLEXITY_API_KEY", c.key("perplexity", "env-file")),
        ("REPLICATE_API_TOKEN", c.key("replicate", "env-file")),
        ("FIREWORKS_API_KEY", c.key("fireworks", "env-file")),
        ("OPENROUTER_API_KEY", c.key("openrouter", "env-file")),
        ("DISCORD_WEBHOOK_URL", c.key("discord-webhook", "env-file")),
    ]
    body = "\n".join(f"{n}={k.m}" for n, k in rows)
    text = fill('''# Next.js local env (vercel env pull)
# Created by Vercel CLI
VERCEL="1"
VERCEL_ENV="development"
VERCEL_GIT_COMMIT_SHA="<<sha>>"
<<body>>
NEXTAUTH_URL=http://localhost:3000
NEXT_PUBLIC_POSTHOG_HOST=https://eu.posthog.com
COHERE_API_KEY=<<empty>>
MISTRAL_API_KEY=<<mph>>
AZURE_OPENAI_KEY=<<aph>>
VERCEL_OIDC_TOKEN="<<jwt>>"
''', body=body, sha=c.neg("4be1f2d6a38c0e44f0d1c84c6f5b1e2a9ad0e7d3", "hash", "a git commit SHA"),
        empty=c.neg("# set me", "placeholder", "no value, a comment"),
        mph=c.neg("your-mistral-api-key", "placeholder", "words"),
        aph=c.neg("<azure-key>", "placeholder", "angle brackets"),
        jwt=c.neg(jwt(c, "owner:acme:project:chat-web:environment:development",
                      "https://oidc.vercel.com/acme"), "jwt", "a Vercel OIDC JWT, expires in an hour"))
    c.file(f"{R}/.env.local", text)


def fixtures(c: Corpus) -> None:
    co = c.negkey("cohere-test-key", "test-fixture-marked-fake", "a test value in a recorded fixture")
    ds = c.key("deepseek", "json-key")
    tg = c.key("together", "json-key", "tgp")
    data = {
        "recordedAt": "2024-05-14T09:12:44Z",
        "providers": {
            "cohere": {"baseUrl": "https://api.cohere.com/v1", "apiKey": "@@CO@@"},
            "deepseek": {"baseUrl": "https://api.deepseek.com", "apiKey": "@@DS@@"},
            "together": {"baseUrl": "https://api.together.xyz/v1", "api_key": "@@TG@@"},
            "azure": {"endpoint": "https://chat-weu.openai.azure.com", "api-key": "@@AZ@@",
                      "deployment": "gpt4o-chat"},
            "mock": {"baseUrl": "http://localhost:4010", "apiKey": "@@FAKE@@"},
        },
        "conversation": {
            "id": "@@CONV@@",
            "messages": [{"role": "user", "content": "What is my order status?"}],
        },
        "etag": "@@ETAG@@",
    }
    text = json.dumps(data, indent=2) + "\n"
    text = (text.replace("@@CO@@", co.m).replace("@@DS@@", ds.m).replace("@@TG@@", tg.m)
            .replace("@@AZ@@", c.neg("0" * 32, "test-fixture-marked-fake", "all zeros in a recorded fixture"))
            .replace("@@FAKE@@", c.neg("mock-key-not-secret", "test-fixture-marked-fake", "mock"))
            .replace("@@CONV@@", c.neg(c.uuid(), "uuid", "conversation id"))
            .replace("@@ETAG@@", c.neg('W/\\"' + c.hex(27) + '\\"', "hash", "an ETag")))
    c.file(f"{R}/test/fixtures/recorded-session.json", text)


def wrangler(c: Corpus) -> None:
    mi = c.key("mistral", "toml-key")
    gg = c.key("google-ai", "toml-key")
    text = fill('''name = "chat-web-edge"
main = "src/worker.ts"
compatibility_date = "2024-05-01"
account_id = "<<acct>>"

[vars]
ENVIRONMENT = "preview"
MISTRAL_API_KEY = "<<mi>>"
GOOGLE_API_KEY = "<<gg>>"
# secrets belong in `wrangler secret put`, these are preview-only keys

[[kv_namespaces]]
binding = "SESSIONS"
id = "<<kv>>"
preview_id = "<<kv2>>"
''', mi=mi.m, gg=gg.m,
        acct=c.neg(c.hex(32), "random-id", "a Cloudflare account id: 32 hex, public"),
        kv=c.neg(c.hex(32), "random-id", "a KV namespace id"),
        kv2=c.neg(c.hex(32), "random-id", "a KV namespace id"))
    c.file(f"{R}/wrangler.toml", text)


def gitlab_ci(c: Corpus) -> None:
    co = c.key("cohere", "ci-file")
    tm = c.key("teams-webhook", "ci-file")
    text = fill('''stages: [test, build, notify]

variables:
  NODE_VERSION: "20"
  COHERE_API_KEY: "<<co>>"
  OPENAI_API_KEY: $OPENAI_API_KEY_STAGING
  DOCKER_DRIVER: overlay2

test:
  stage: test
  image: node:${NODE_VERSION}
  cache:
    key:
      files: [package-lock.json]
  script:
    - npm ci
    - npm test

build:
  stage: build
  image: docker:24
  script:
    - docker build -t $CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA .

notify:
  stage: notify
  when: on_failure
  script:
    - >
      curl -sS -H "Content-Type: application/json"
      -d "{\\"text\\": \\"chat-web pipeline $CI_PIPELINE_ID failed\\"}"
      "<<tm>>"
''', co=co.m, tm=tm.m)
    c.file(f"{R}/.gitlab-ci.yml", text)


def package_lock(c: Corpus) -> None:
    deps = [("@anthropic-ai/sdk", "0.24.3"), ("groq-sdk", "0.5.0"), ("next", "14.2.5"),
            ("openai", "4.52.7"), ("react", "18.3.1"), ("react-dom", "18.3.1"),
            ("replicate", "0.31.1"), ("zod", "3.23.8"), ("server-only", "0.0.1"),
            ("typescript", "5.5.3"), ("eslint", "8.57.0"), ("vitest", "1.6.0")]
    lines = ['{', '  "name": "chat-web",', '  "version": "0.4.0",', '  "lockfileVersion": 3,',
             '  "requires": true,', '  "packages": {']
    for i, (name, version) in enumerate(deps):
        base = name.split("/")[-1]
        integ = c.neg(sri512(c), "hash", "npm integrity (sha512)")
        lines += [f'    "node_modules/{name}": {{', f'      "version": "{version}",',
                  f'      "resolved": "https://registry.npmjs.org/{name}/-/{base}-{version}.tgz",',
                  f'      "integrity": "{integ}"', "    }" + ("," if i < len(deps) - 1 else "")]
    lines += ["  }", "}"]
    c.file(f"{R}/package-lock.json", "\n".join(lines) + "\n")


def styles(c: Corpus) -> None:
    text = fill('''.chat-empty {
  background-image: url("data:image/png;base64,<<png>>");
  background-repeat: no-repeat;
}

/* skeleton loader while the provider answers */
<<sk>> {
  animation: pulse 1.2s infinite;
}

.avatar-bot {
  background-image: url("data:image/png;base64,<<png2>>");
}
''', png=c.neg(png_b64(c), "base64-blob", "a PNG data URI"),
        png2=c.neg(png_b64(c, 20, 20), "base64-blob", "a PNG data URI"),
        sk=c.neg(".sk-proj-card,\n.sk-ant-placeholder", "look-alike",
                 "CSS class names (sk = skeleton) with key-like prefixes"))
    c.file(f"{R}/src/styles/chat.css", text)
