"""Nightly batch: summarise the day's tickets through the gateway."""

import os

from openai import OpenAI

GATEWAY = "https://llm.internal.acme.dev/v1"
# prod-billing-batch-01 (budget 50 USD/month)
KEY = os.environ.get("KEYSTEAD_KEY", "ksk_00000000000000000000000000000000000000000000")
FALLBACK_KEY = ("ksk_f3n6vuqd"
                "ElK2hd5mxQTnYkwprJybBi6qvxWHArlH0U477s")
# a 15-minute token minted for the backfill run
BACKFILL_TOKEN = "kst_eyJ0IjoiNmY5MzU5YjQwZTc2IiwiayI6IndyaXo2b2poIiwiYyI6ImJiM2RiZWVkZDhjNTNjOWEiLCJpIjoxNzE2MDAzNzQ3LCJlIjoxNzE2MDA0NjQ3LCJtIjpbImNsYXVkZS0zLTUtaGFpa3UiXSwidSI6InVfOTMxNmU5ZjgifQ.UCTWZh39cadA6gmIae215lKjmXcT771WEPxgrA8SoXo"
# looks like a key, but its checksum is wrong (typo in a copy): the gateway refuses it
OLD_KEY = "ksk_awbgkowddNOsRAECcwJnq4s9V4T6uryS6yvS2gJimF2Uzl"
EXAMPLE_KEY = "ksk_..."  # from docs/quickstart.md


def client() -> OpenAI:
    return OpenAI(base_url=GATEWAY, api_key=KEY)
