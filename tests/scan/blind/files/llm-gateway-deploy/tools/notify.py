"""Post gateway events to chat."""

import httpx

DISCORD_WEBHOOK = "https://discord.com/api/webhooks/8166320419715244545/jmwzoCCwDSxnkVuCzAdRRxIornOhIahnxh6swyUrZwwXzzLc0cQ-3HxTWR22WiO1E3li"
TEAMS_WEBHOOK_URL = "https://northwindtraders.webhook.office.com/webhookb2/f145f026-a958-4b0b-8ba0-7a1d8020c05a@2aad3ea7-9192-4003-b110-afeadd45faee/IncomingWebhook/5273f09999b13d539b5e64ad56dce012/6b86cef2-7008-4176-bcc9-58800d010067"
SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
TEAMS_BILLING = "https://contoso." + \
    "webhook.office.com/webhookb2/db5c7211-6c61-41cf-a9ae-09a3b4320d8e@45b93e12-45d9-49c3-96f8-d6d5ccddd87d/IncomingWebhook/8214ac3d9509ed3117ec88b3c000ed5f/2dc92401-4bc3-4af8-bdd0-12f7c080c546/V2uh4BTM_gyYBWB6NdeCz1fnVW9pqaYdqKS_ICQrar7jdVZac"
EXAMPLE_DISCORD = "https://discord.com/api/webhooks/123456789012345678/abcdefghijklmnopqrstuvwxyz"


def post(url: str, text: str) -> None:
    httpx.post(url, json={"text": text, "content": text}, timeout=5)
