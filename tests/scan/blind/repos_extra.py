"""Files rich in hard negatives, inside the same repositories as the keys: a key-format
validator's tests, a key-format runbook, web assets, more logs and fixtures."""

from __future__ import annotations

import base64
import hashlib
import json
import struct

from corpus_core import B62, B64URL, Corpus, fill, github_checksum
from neg_helpers import bad_github, bad_ksk, jwt, png_b64, sha1, sha256


def build(c: Corpus) -> None:
    validator_tests(c)
    key_formats_doc(c)
    index_html(c)
    auth_tests(c)
    chart_icon(c)
    email_template(c)
    session_log(c)
    more_keys(c)
    github_app(c)


def validator_tests(c: Corpus) -> None:
    """support-api validates the provider keys customers bring (BYOK): its tests list shapes
    that must be refused. None of them is a live key."""
    la = "look-alike"
    bad_shapes = [
        ("openai", "sk-proj-" + c.b64url(20), la, "sk-proj- but 20 characters"),
        ("openai", "sk-proj-" + c.s(B62, 40) + " " + c.s(B62, 40), la, "a space inside"),
        ("anthropic", "sk-ant-api03-" + c.b64url(40), la, "sk-ant-api03- but 40 characters"),
        ("anthropic", "sk-ant-api03-" + c.b64url(93) + "ZZ", la, "does not end in AA"),
        ("google-ai", "AIza" + c.b64url(20), la, "AIza but 20 characters"),
        ("google-ai", "AIza" + c.s(B64URL, 30) + "!@#$%", la, "wrong charset"),
        ("azure-openai", c.hex(31), la, "31 hex, one short"),
        ("azure-openai", c.hex(28) + "wxyz", la, "not hex"),
        ("mistral", c.s(B62, 31), la, "31 characters, one short"),
        ("mistral", c.s(B62, 16) + "-" + c.s(B62, 15), la, "a dash inside"),
        ("cohere", c.s(B62, 39), la, "39 characters, one short"),
        ("cohere", c.s(B62, 20) + "_" + c.s(B62, 19), la, "an underscore inside"),
        ("deepseek", "sk-" + c.hex(31), la, "sk- and 31 hex"),
        ("deepseek", "sk-" + c.s("ghijklmnopqrstuvwxyz", 32), la, "sk- and 32 non-hex"),
        ("together", "tgp_v1_" + c.b64url(12), la, "tgp_v1_ but 12 characters"),
        ("groq", "gsk_" + c.s(B62, 20), la, "gsk_ but 20 characters"),
        ("xai", "xai-" + c.s(B62, 30), la, "xai- but 30 characters"),
        ("perplexity", "pplx-" + c.hex(20), la, "pplx- but 20 characters"),
        ("huggingface", "hf_" + c.s("0123456789", 34), la, "hf_ and digits only"),
        ("replicate", "r8_" + c.s(B62, 12), la, "r8_ but 12 characters"),
        ("fireworks", "fw_" + c.s(B62, 10), la, "fw_ but 10 characters"),
        ("openrouter", "sk-or-v1-" + c.hex(40), la, "sk-or-v1- but 40 hex"),
        ("langsmith", "lsv2_pt_" + c.hex(32), la, "lsv2_pt_ without the _suffix"),
        ("aws", "AKIA" + c.s("abcdefghijklmnopqrstuvwxyz", 16), la, "AKIA and lowercase"),
        ("aws", "AKIA" + c.s("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 12), la, "AKIA but 12 characters"),
        ("github", "ghp_" + c.s(B62, 20), la, "ghp_ but 20 characters"),
        ("keystead", "ksk_" + c.s("abcdefghijklmnopqrstuvwxyz234567", 8) + c.s(B62, 20), la,
         "ksk_ but too short"),
    ]
    rows = []
    for prov, text, kind, note in bad_shapes:
        rows.append(f'    ("{prov}", "{c.neg(text, kind, note)}"),')
    checks = []
    for prefix in ("ghp", "gho", "ghu", "ghs", "ghr", "ghp", "gho", "ghs"):
        checks.append(f'    "{c.neg(bad_github(c, prefix), "bad-checksum", "GitHub shape, CRC32 does not match")}",')
    for _ in range(4):
        checks.append(f'    "{c.neg(bad_ksk(c), "bad-checksum", "keystead key shape, CRC32 does not match")}",')
    # one with the checksum of a different random part: right alphabet, wrong CRC
    rnd = c.s(B62, 30)
    other = github_checksum(c.s(B62, 30))
    if other == github_checksum(rnd):  # practically never; keep the label honest anyway
        other = other[:-1] + ("0" if other[-1] != "0" else "1")
    checks.append(f'    "{c.neg("ghp_" + rnd + other, "bad-checksum", "checksum of another token")}",')
    text = fill('''"""BYOK: a customer's provider key is checked for shape before we store it."""

import pytest

from app.byok import KeyShapeError, check_shape

# Shapes that must be refused. None of these is a key: each breaks the provider's format.
MALFORMED = [
<<rows>>
]

# Token-shaped strings whose checksum is wrong (typos): refused without calling GitHub.
BAD_CHECKSUM = [
<<checks>>
]

FAKE_BUT_WELL_FORMED = {
    "openai": "<<f1>>",  # fake: the test double accepts it
    "google-ai": "<<f2>>",
    "cohere": "<<f3>>",
}


@pytest.mark.parametrize(("provider", "text"), MALFORMED)
def test_malformed_keys_are_refused(provider: str, text: str) -> None:
    with pytest.raises(KeyShapeError):
        check_shape(provider, text)


@pytest.mark.parametrize("text", BAD_CHECKSUM)
def test_bad_checksums_are_refused(text: str) -> None:
    with pytest.raises(KeyShapeError, match="checksum"):
        check_shape("github" if text.startswith("gh") else "keystead", text)
''', rows="\n".join(rows), checks="\n".join(checks),
        f1=c.neg("sk-proj-FAKE" + "0" * 60 + "T3BlbkFJ" + "FAKE" + "0" * 60, "test-fixture-marked-fake",
                 "spelled FAKE and zeros"),
        f2=c.neg("AIzaFAKE_FOR_TESTS_ONLY_000000000000", "test-fixture-marked-fake", "spells FAKE"),
        f3=c.neg("FAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKE", "test-fixture-marked-fake", "FAKE x10"))
    c.file("support-api/tests/test_byok_shapes.py", text)


def key_formats_doc(c: Corpus) -> None:
    d = "doc-example"
    text = fill('''# Provider key formats (for reviewers)

What a leaked key looks like, with the examples each provider's documentation uses. The examples
are not keys.

| provider | format | example from its docs |
|---|---|---|
| OpenAI | `sk-proj-` + long base64url | `<<e1>>` |
| Anthropic | `sk-ant-api03-` + 95 characters | `<<e2>>` |
| Google AI Studio | `AIza` + 35 characters | `<<e3>>` |
| Hugging Face | `hf_` + 34 letters | `<<e4>>` |
| GitHub | `ghp_` + 36 | `<<e5>>` |
| AWS | `AKIA` + 16, secret 40 | `<<e6>>`, `<<e7>>` |
| Slack webhook | `https://hooks.slack.com/services/T.../B.../...` | `<<e8>>` |
| Discord webhook | `https://discord.com/api/webhooks/ID/TOKEN` | `<<e9>>` |
| Teams webhook | `https://TENANT.webhook.office.com/webhookb2/...` | `<<e10>>` |
| Groq | `gsk_` + 52 | `<<e11>>` |
| Replicate | `r8_` + 37 | `<<e12>>` |
| keystead | `ksk_` + id + secret + checksum | `<<e13>>` |

In configuration files write references, never values:

```yaml
api_key: <<p1>>
token: <<p2>>
```

A redacted key in a ticket looks like `<<r1>>` or `<<r2>>`: the middle is gone, nothing to rotate.
''', e1=c.neg("sk-proj-abcdefghijklmnopqrstuvwxyz1234567890", d, "a docs-style example"),
        e2=c.neg("sk-ant-api03-...", d, "Anthropic docs style"),
        e3=c.neg("AIzaSyD-EXAMPLE-KEY", d, "docs style, too short"),
        e4=c.neg("hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", d, "x's"),
        e5=c.neg("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", d, "x's"),
        e6=c.neg("AKIAIOSFODNN7EXAMPLE", d, "AWS docs"),
        e7=c.neg("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", d, "AWS docs"),
        e8=c.neg("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", d,
                 "Slack docs"),
        e9=c.neg("https://discord.com/api/webhooks/{webhook.id}/{webhook.token}", d, "Discord docs"),
        e10=c.neg("https://contoso.webhook.office.com/webhookb2/{group-id}@{tenant-id}/IncomingWebhook/"
                  "{connector-id}/{owner-id}", d, "Microsoft docs, braces"),
        e11=c.neg("gsk_...", d, "ellipsis"),
        e12=c.neg("r8_******", d, "asterisks"),
        e13=c.neg("ksk_3fq7a2kc0aZ...Xy12Ab", d, "keystead's own docs style"),
        p1=c.neg("${OPENAI_API_KEY}", "placeholder", "reference"),
        p2=c.neg("vault:github-release", "placeholder", "reference"),
        r1=c.neg("sk-proj-…b2Xc", "redacted", "middle removed"),
        r2=c.neg("AIza*******************************Qw", "redacted", "asterisks"))
    c.file("platform-ops/runbooks/key-formats.md", text)


def index_html(c: Corpus) -> None:
    def script_hash() -> str:
        return "sha384-" + base64.b64encode(hashlib.sha384(c.rng.randbytes(16)).digest()).decode()

    text = fill('''<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="csrf-token" content="<<csrf>>">
  <meta http-equiv="Content-Security-Policy" content="script-src 'nonce-<<nonce>>' 'strict-dynamic'">
  <link rel="icon" href="data:image/png;base64,<<icon>>">
  <script src="https://cdn.jsdelivr.net/npm/marked@12.0.2/marked.min.js"
          integrity="<<i1>>" crossorigin="anonymous"></script>
  <script nonce="<<nonce2>>">window.__BUILD__ = {id: "<<build>>", sha: "<<sha>>"};</script>
  <script nonce="<<nonce3>>">window.__CONFIG__ = {gatewayUrl: "/v1", sentryRelease: "<<rel>>"};</script>
</head>
<body>
  <img alt="" src="data:image/png;base64,<<img>>">
  <div id="root" data-session="<<sid>>"></div>
  <script src="/assets/index-<<asset>>.js" integrity="<<i2>>"></script>
</body>
</html>
''', csrf=c.neg(c.b64url(43), "high-entropy-non-secret", "a per-render CSRF token in a static snapshot"),
        nonce=c.neg(base64.b64encode(c.rng.randbytes(16)).decode(), "high-entropy-non-secret", "CSP nonce"),
        nonce2=c.neg(base64.b64encode(c.rng.randbytes(16)).decode(), "high-entropy-non-secret", "CSP nonce"),
        nonce3=c.neg(base64.b64encode(c.rng.randbytes(16)).decode(), "high-entropy-non-secret", "CSP nonce"),
        icon=c.neg(png_b64(c, 8, 8), "base64-blob", "favicon data URI"),
        i1=c.neg(script_hash(), "hash", "subresource integrity"),
        i2=c.neg(script_hash(), "hash", "subresource integrity"),
        build=c.neg(c.s(B62, 21), "random-id", "build id"),
        sha=c.neg(sha1(c), "hash", "commit SHA"),
        rel=c.neg("chat-web@" + c.hex(12), "random-id", "a release name"),
        img=c.neg(png_b64(c, 40, 10), "base64-blob", "inline image"),
        sid=c.neg(c.hex(48), "high-entropy-non-secret", "an anonymous analytics session id"),
        asset=c.neg(c.s(B62, 8), "random-id", "asset hash"))
    c.file("chat-web/public/index.html", text)


def auth_tests(c: Corpus) -> None:
    tokens = [c.neg(jwt(c, f"user-{i}"), "jwt", "an id token from the test IdP") for i in range(6)]
    text = fill('''import { describe, expect, it } from "vitest";
import { verifySession } from "../src/lib/session";

// Tokens from the staging IdP, signed with its test key (JWKS in fixtures/jwks.json); expired.
const TOKENS = {
  admin: "<<t0>>",
  agent: "<<t1>>",
  viewer: "<<t2>>",
  expired: "<<t3>>",
  wrongAudience: "<<t4>>",
  noKid: "<<t5>>",
};

const SESSION_SALT = "<<salt>>"; // cookie-name salt, not a secret
const FAKE_OPENAI_KEY = "<<fake>>"; // fake: the route handler is mocked
const IDEMPOTENCY_KEY = "<<idem>>";

describe("verifySession", () => {
  it("accepts an admin", async () => {
    expect((await verifySession(TOKENS.admin)).role).toBe("admin");
  });
  it("refuses an expired token", async () => {
    await expect(verifySession(TOKENS.expired)).rejects.toThrow(/expired/);
  });
});
''', **{f"t{i}": t for i, t in enumerate(tokens)},
        salt=c.neg(c.hex(32), "high-entropy-non-secret", "a salt"),
        fake=c.neg("sk-fake-openai-key-for-tests", "test-fixture-marked-fake", "named fake"),
        idem=c.neg(c.uuid(), "uuid", "idempotency key"))
    c.file("chat-web/test/session.test.ts", text)
    jwks = {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": c.hex(8),
                      "n": "@@MOD@@", "e": "AQAB"}]}
    out = json.dumps(jwks, indent=2) + "\n"
    out = out.replace("@@MOD@@", c.neg(c.b64url(342), "base64-blob", "an RSA public modulus (JWKS)"))
    c.file("chat-web/test/fixtures/jwks.json", out)


def chart_icon(c: Corpus) -> None:
    c.file("llm-gateway-chart/templates/NOTES.txt", fill('''Thank you for installing {{ .Chart.Name }}.

Icon: data:image/png;base64,<<icon>>

Get the admin token:
  kubectl get secret {{ include "llm-gateway.fullname" . }}-admin -o jsonpath="{.data.token}" | base64 -d

Checksum of the default values: <<sum>>
''', icon=c.neg(png_b64(c, 12, 12), "base64-blob", "chart icon"),
        sum=c.neg(sha256(c), "hash", "values checksum")))


def email_template(c: Corpus) -> None:
    text = fill('''<!-- billing-service: monthly invoice mail -->
<table>
  <tr><td><img src="data:image/png;base64,<<logo>>" alt="ACME"></td></tr>
  <tr><td>Invoice {{invoice.number}}, reference <<ref>></td></tr>
  <tr><td><img src="data:image/png;base64,<<sig>>" alt="signature"></td></tr>
  <tr><td>Verify at https://billing.acme.dev/verify?doc=<<doc>>&amp;h=<<h>></td></tr>
</table>
<!-- tracking pixel id <<pix>> -->
''', logo=c.neg(png_b64(c, 30, 10), "base64-blob", "logo"),
        ref=c.neg(c.uuid(), "uuid", "invoice reference"),
        sig=c.neg(png_b64(c, 24, 8), "base64-blob", "scanned signature image"),
        doc=c.neg(c.s(B62, 22), "random-id", "document id"),
        h=c.neg(c.hex(64), "hash", "document hash"),
        pix=c.neg(c.hex(32), "random-id", "tracking pixel id"))
    c.file("billing-service/src/main/resources/templates/invoice-mail.html", text)


def session_log(c: Corpus) -> None:
    rows = []
    for i in range(16):
        kind = i % 4
        ts = f"2024-06-12 11:{i * 3:02d}:{(i * 7) % 60:02d}"
        if kind == 0:
            rows.append(f"{ts} INFO auth login ok user=agent{i} session_id="
                        + c.neg(c.b64url(32), "high-entropy-non-secret", "a session id"))
        elif kind == 1:
            rows.append(f"{ts} DEBUG auth bearer=" + c.neg(jwt(c, f"agent{i}"), "jwt", "an id token"))
        elif kind == 2:
            rows.append(f"{ts} INFO cache put key=resp:" + c.neg(c.hex(64), "high-entropy-non-secret",
                                                                 "a response cache key")
                        + f" ttl=300 bytes={c.rng.randint(200, 9000)}")
        else:
            rows.append(f"{ts} INFO s3 put etag=\"" + c.neg(c.hex(32), "hash", "an S3 ETag (md5)")
                        + "\" x-amz-request-id=" + c.neg(c.s("0123456789ABCDEF", 16), "random-id",
                                                         "AWS request id")
                        + " x-amz-id-2=" + c.neg(base64.b64encode(c.rng.randbytes(48)).decode(),
                                                  "random-id", "AWS extended request id"))
    rows.append("2024-06-12 11:59:00 INFO key rotated provider=openai old=" +
                c.neg("sk-proj-…" + c.s(B62, 4), "redacted", "masked") + " new=" +
                c.neg("sk-proj-…" + c.s(B62, 4), "redacted", "masked"))
    rows.append("2024-06-12 11:59:02 WARN gitleaks finding ignored (allowlisted test fixture): "
                + c.neg(bad_github(c, "ghu"), "bad-checksum", "wrong CRC32"))
    rows.append("2024-06-12 11:59:03 INFO deploy ssh key fingerprint "
                + c.neg("SHA256:" + base64.b64encode(c.rng.randbytes(32)).decode().rstrip("="),
                        "hash", "ssh key fingerprint"))
    rows.append("2024-06-12 11:59:04 INFO added authorized key ssh-ed25519 "
                + c.neg(ssh_ed25519(c), "other", "an SSH public key: public by design")
                + " ops@bastion")
    c.file("platform-ops/logs/auth-2024-06-12.log", "\n".join(rows) + "\n")


def ssh_ed25519(c: Corpus) -> str:
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + c.rng.randbytes(32)
    return base64.b64encode(blob).decode()


def more_keys(c: Corpus) -> None:
    """A few more keys where places are thin: wrapped lines and comments."""
    gq = c.key("groq", "line-continuation")
    g1, g2 = gq.split(26)
    rp = c.key("replicate", "line-continuation")
    r1, r2 = rp.split(20)
    pp = c.key("perplexity", "comment")
    fw = c.key("fireworks", "comment")
    text = fill('''#!/usr/bin/env bash
# Load-test the gateway with a model behind Groq.
export GROQ_API_KEY=<<g1>>\\
<<g2>>
# perplexity key for the comparison run (revoked after): <<pp>>
export REPLICATE_API_TOKEN="<<r1>>\\
<<r2>>"
# fireworks: <<fw>>
export RUN_ID=<<run>>
export TRACE_SALT=<<salt>>
wrk -t2 -c32 -d60s -s bench/chat.lua https://llm.internal.acme.dev/v1/chat/completions
''', g1=g1, g2=g2, r1=r1, r2=r2, pp=pp.m, fw=fw.m,
        run=c.neg(c.uuid(), "uuid", "run id"),
        salt=c.neg(c.hex(16), "high-entropy-non-secret", "a trace sampling salt"))
    c.file("platform-ops/scripts/loadtest.sh", text)
    tg = c.key("together", "comment", "tgp")
    ds = c.key("deepseek", "comment")
    text = fill('''-- usage rollup for the finops dashboard
-- old together key used by the import job: <<tg>>
-- deepseek trial: <<ds>>
SELECT date_trunc('day', ts) AS day, provider, sum(cost_usd) AS cost
FROM usage
WHERE key_hash <> '<<kh>>'  -- exclude the load-test key
GROUP BY 1, 2;
''', tg=tg.m, ds=ds.m, kh=c.neg(c.hex(64), "hash", "a key hash, not the key"))
    c.file("finops-exports/sql/daily_rollup.sql", text)


def github_app(c: Corpus) -> None:
    """GitHub App config: a private key placeholder, ids, a webhook secret reference."""
    text = fill('''app_id: 812734
client_id: Iv1.<<cid>>
installation_id: 51234987
webhook_secret: ${GITHUB_WEBHOOK_SECRET}
private_key_path: /run/secrets/github-app.pem
# fingerprint of the current private key
key_fingerprint: <<fp>>
# the last delivery we processed
last_delivery_guid: <<guid>>
example_token_from_docs: <<doc>>
''', cid=c.neg(c.hex(16), "random-id", "a GitHub App client id: public"),
        fp=c.neg("SHA256:" + base64.b64encode(c.rng.randbytes(32)).decode().rstrip("="), "hash",
                 "key fingerprint"),
        guid=c.neg(c.uuid(), "uuid", "delivery guid"),
        doc=c.neg("ghs_16C7e42F292c6912E7710c838347Ae178B4a", "doc-example",
                  "GitHub docs' example installation token"))
    c.file("llm-gateway-deploy/github-app.yaml", text)

