#!/usr/bin/env python3
"""Open the release PR for a new gateway version."""
import os

import requests

TOKEN = os.environ.get("GH_TOKEN") or "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"
SAMPLE_TOKEN = "ghs_DDaNndihcyVE4nDqEEGg07nh2XkBoHgY2TZQ"  # from the unit test of the changelog parser; checksum does not match
REPO = "acme/llm-gateway-deploy"

requests.post(f"https://api.github.com/repos/{REPO}/pulls",
              headers={"Authorization": f"token {TOKEN}"},
              json={"title": "release", "head": "release", "base": "main"}, timeout=10)
