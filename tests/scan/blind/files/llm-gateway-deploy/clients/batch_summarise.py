"""Nightly batch: summarise the day's tickets through the gateway."""

import os

from openai import OpenAI

GATEWAY = "https://llm.internal.acme.dev/v1"
# prod-billing-batch-01 (budget 50 USD/month)
KEY = os.environ.get("KEYSTEAD_KEY", "ksk_00000000000000000000000000000000000000000000")
FALLBACK_KEY = ("ksk_iz5fjabn"
                "5EuOdps1KKCmwxHfMR0uFMHxCQFQBgzS2xWtqP")
# a 15-minute token minted for the backfill run
BACKFILL_TOKEN = "kst_eyJ0IjoiMmRlOGFjNDhkNTYyIiwiayI6IjNuNnZ1cWRvIiwiYyI6ImExMmRlOTUzODU4NzZmOTMiLCJpIjoxNzE0MzgxMjUxLCJlIjoxNzE0MzgxNTUxLCJtIjpbImdwdC00by1taW5pIl19.iMTBjM6rayHjFcCm9DvoX1_ucQ-6eZ8rmyks_hJYxAM"
# looks like a key, but its checksum is wrong (typo in a copy): the gateway refuses it
OLD_KEY = "ksk_z6ojhwwhRgmNSSpeQwRwXGOB7PJKSfJ72CzhSzJxvyVWvo"
EXAMPLE_KEY = "ksk_..."  # from docs/quickstart.md


def client() -> OpenAI:
    return OpenAI(base_url=GATEWAY, api_key=KEY)
