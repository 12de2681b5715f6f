"""finops-exports: CSV/TSV exports, JSON lines with JSON-encoded payloads, a settings dump."""

from __future__ import annotations

import json

from corpus_core import B62, Corpus
from neg_helpers import bad_github, bad_ksk, jwt, sha256

R = "finops-exports"


def build(c: Corpus) -> None:
    usage_csv(c)
    inventory_tsv(c)
    events_jsonl(c)
    settings_dump(c)


def usage_csv(c: Corpus) -> None:
    rows = ["date,team,provider,key_name,api_key,requests,input_tokens,output_tokens,cost_usd"]
    teams = ["support", "billing", "search", "growth", "ml-platform"]
    live = [("openai", "openai"), ("cohere", "cohere"), ("azure-openai", "azure"),
            ("mistral", "mistral"), ("groq", "groq"), ("anthropic", "anthropic"),
            ("together", "together"), ("perplexity", "perplexity")]
    masked = {"openai": "sk-proj-…{}", "anthropic": "sk-ant-…{}", "groq": "gsk_…{}",
              "cohere": "…{}", "mistral": "****{}", "azure": "••••{}", "together": "…{}",
              "perplexity": "pplx-…{}"}
    day = 1
    for i in range(26):
        prov_id, name = live[i % len(live)]
        team = teams[i % len(teams)]
        if i % 5 == 1:
            k = c.key(prov_id, "csv-cell", "hex64" if prov_id == "together" else None)
            cell = k.m
            if i % 2:
                cell = f'"{k.m}"'
        else:
            cell = c.neg(masked[name].format(c.s(B62, 4)), "redacted", "a masked key in the export")
        req = c.rng.randint(100, 90000)
        rows.append(f"2024-05-{day:02d},{team},{name},{team}-{name}-{i:02d},{cell},{req},"
                    f"{req * c.rng.randint(200, 900)},{req * c.rng.randint(20, 200)},"
                    f"{c.rng.uniform(1, 900):.2f}")
        day += i % 2
    c.file(f"{R}/usage/usage-2024-05.csv", "\n".join(rows) + "\n")

    rows = ['"key_id","owner","created","notes"']
    for _ in range(6):
        rows.append(f'"{c.neg(c.uuid(), "uuid", "key id")}","{c.rng.choice(teams)}",'
                    f'"2024-04-{c.rng.randint(1, 28):02d}","rotated"')
    k = c.key("fireworks", "csv-cell")
    rows.insert(3, f'"{c.neg(c.uuid(), "uuid", "key id")}","ml-platform","2024-04-02",'
                   f'"temp key {k.m} until the vault migration"')
    k = c.key("xai", "csv-cell")
    rows.insert(5, f'"{c.neg(c.uuid(), "uuid", "key id")}","growth","2024-04-09","{k.m}"')
    c.file(f"{R}/usage/key-owners.csv", "\n".join(rows) + "\n")


def inventory_tsv(c: Corpus) -> None:
    header = "service\tenv\tprovider\tsecret\tlast_rotated\tcontact"
    rows = [header]
    live = [("billing-service", "prod", "azure-openai", "azure"),
            ("support-api", "staging", "cohere", "cohere"),
            ("search", "prod", "mistral", "mistral"),
            ("chat-web", "preview", "openrouter", "openrouter"),
            ("ml-batch", "prod", "together", "together"),
            ("ops", "prod", "aws", "aws"),
            ("notifier", "prod", "teams-webhook", "teams")]
    for i, (svc, env, prov, label) in enumerate(live):
        variant = {"together": "hex64", "aws": "secret", "keystead": "ksa", "github": "ghu"}.get(prov)
        k = c.key(prov, "tsv-cell", variant)
        rows.append(f"{svc}\t{env}\t{label}\t{k.m}\t2024-0{1 + i % 6}-1{i % 9}\t@{svc.split('-')[0]}")
        if i % 2:
            rows.append(f"{svc}\t{env}\t{label}\t"
                        + c.neg(c.rng.choice(["vault:llm/" + label, "<rotated>", "see 1Password",
                                              "${" + label.upper() + "_KEY}"]), "placeholder",
                                "a pointer, not the secret")
                        + f"\t2024-02-01\t@{svc.split('-')[0]}")
    rows.append("ops\tci\tgithub\t" + c.neg(bad_github(c, "ghp"), "bad-checksum", "wrong CRC32")
                + "\t2023-11-30\t@ops")
    rows.append("ops\tci\tgithub\t" + c.neg(bad_github(c, "gho"), "bad-checksum", "wrong CRC32")
                + "\t2023-11-30\t@ops")
    c.file(f"{R}/inventory/secrets-inventory.tsv", "\n".join(rows) + "\n")


def events_jsonl(c: Corpus) -> None:
    """Audit events whose payload is a JSON document encoded as a string (escaped quotes)."""
    lines = []
    live = [("groq", "api_key"), ("cohere", "apiKey"), ("azure-openai", "api_key"),
            ("mistral", "api_key"), ("keystead", "token"), ("slack-webhook", "url"),
            ("together", "api_key")]
    for i, (prov, field) in enumerate(live):
        variant = {"keystead": "kst", "together": "tgp"}.get(prov)
        k = c.key(prov, "json-escaped", variant)
        payload = json.dumps({"provider": prov, field: k.m, "rotated_by": "maria@acme.dev"})
        event = {"ts": f"2024-05-{i + 1:02d}T10:00:00Z", "type": "provider.updated",
                 "actor": "admin", "payload": payload}
        lines.append(json.dumps(event))
        payload = json.dumps({"provider": prov, "request_id": c.neg(c.uuid(), "uuid", "request id"),
                              "tokens": c.rng.randint(1, 5000)})
        lines.append(json.dumps({"ts": f"2024-05-{i + 1:02d}T10:05:00Z", "type": "usage",
                                 "payload": payload}))
        if i % 3 == 0:
            payload = json.dumps({"provider": prov, field: c.neg(
                c.rng.choice(["***", "sk-...", "<redacted>", "••••••••"]), "redacted", "masked")})
            lines.append(json.dumps({"ts": f"2024-05-{i + 1:02d}T11:00:00Z",
                                     "type": "provider.viewed", "payload": payload}))
    # doubly encoded: a JSON string inside a JSON string inside JSON
    k = c.key("anthropic", "json-escaped")
    inner = json.dumps({"headers": {"x-api-key": k.m}})
    lines.append(json.dumps({"ts": "2024-05-20T12:00:00Z", "type": "webhook.replay",
                             "payload": json.dumps({"request": inner})}))
    k = c.key("openrouter", "json-escaped")
    inner = json.dumps({"headers": {"Authorization": "Bearer " + k.m}})
    lines.append(json.dumps({"ts": "2024-05-21T12:00:00Z", "type": "webhook.replay",
                             "payload": json.dumps({"request": inner})}))
    lines.append(json.dumps({"ts": "2024-05-22T12:00:00Z", "type": "login",
                             "payload": json.dumps({"id_token": c.neg(jwt(c, "maria"), "jwt",
                                                                      "an id token")})}))
    c.file(f"{R}/audit/events-2024-05.jsonl", "\n".join(lines) + "\n")


def settings_dump(c: Corpus) -> None:
    gh = c.key("github", "json-key", "ghp")
    ks = c.negkey(bad_ksk(c), "bad-checksum", "a ksk_ key with a wrong checksum")
    xa = c.key("xai", "json-key")
    data = {
        "exportedAt": "2024-05-31T23:59:59Z",
        "integrations": {
            "github": {"org": "acme", "token": "@@GH@@", "appId": 812734},
            "gateway": {"url": "https://llm.internal.acme.dev/v1", "apiKey": "@@KS@@"},
            "xai": {"XAI_API_KEY": "@@XA@@"},
            "azure_openai": {"endpoint": "https://finops.openai.azure.com", "key1": "@@AZ@@",
                             "key2": "@@AZ2@@"},
            "mistral": {"api_key": "@@MI@@", "model": "mistral-large-latest"},
            "cohere": {"api_key": "@@CO@@"},
        },
        "report": {"checksum": "@@SUM@@", "id": "@@ID@@"},
    }
    text = json.dumps(data, indent=2) + "\n"
    for tok, val in (("@@GH@@", gh.m), ("@@KS@@", ks.m), ("@@XA@@", xa.m),
                     ("@@AZ@@", c.neg("<primary key from the portal>", "placeholder", "placeholder")),
                     ("@@MI@@", c.neg("env:MISTRAL_API_KEY", "placeholder", "a reference")),
                     ("@@AZ2@@", c.neg("(regenerated, see portal)", "placeholder", "not a key")),
                     ("@@CO@@", c.neg("TBD", "placeholder", "not set yet")),
                     ("@@SUM@@", c.neg(sha256(c), "hash", "report checksum")),
                     ("@@ID@@", c.neg(c.uuid(), "uuid", "report id"))):
        text = text.replace(tok, val)
    c.file(f"{R}/exports/integrations-settings.json", text)
