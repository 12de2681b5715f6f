"""Post gateway events to chat."""

import httpx

DISCORD_WEBHOOK = "https://discord.com/api/webhooks/5053431329228407390/ahnxh6swyUrZwwXzzLc0cQ-3HxTWR22WiO1E3liIfvulEn_dNKKKTen0unMTx5BtQ1uA"
TEAMS_WEBHOOK_URL = "https://fabrikam.webhook.office.com/webhookb2/7365fa3f-ea24-4fab-a313-b6cd95aa64b6@090611ac-06e1-49a5-a13d-a8d186cfa111/IncomingWebhook/21fed1d2888214ac3d9509ed3117ec88/19cbbda4-fdb1-4b08-a0c5-1f9e5b0db436"
SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
TEAMS_BILLING = "https://fabrikam" + \
    ".webhook.office.com/webhookb2/024fe89a-0327-4a53-a017-1b05abc06cc8@d2251f23-ebd5-4c72-a42f-cdf1b6306e23/IncomingWebhook/0ed5f95e051e6b9f16c6c6e90176d13b/e896432d-b678-4a47-b619-064cc0df76ed"
EXAMPLE_DISCORD = "https://discord.com/api/webhooks/123456789012345678/abcdefghijklmnopqrstuvwxyz"


def post(url: str, text: str) -> None:
    httpx.post(url, json={"text": text, "content": text}, timeout=5)
