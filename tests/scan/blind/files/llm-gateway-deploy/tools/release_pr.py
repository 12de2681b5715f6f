#!/usr/bin/env python3
"""Open the release PR for a new gateway version."""
import os

import requests

TOKEN = os.environ.get("GH_TOKEN") or "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"
SAMPLE_TOKEN = "ghs_I9kt2JkDdPIH3dIWQQtbHPd0p2QVX8KXOOoW"  # from the unit test of the changelog parser; checksum does not match
REPO = "acme/llm-gateway-deploy"

requests.post(f"https://api.github.com/repos/{REPO}/pulls",
              headers={"Authorization": f"token {TOKEN}"},
              json={"title": "release", "head": "release", "base": "main"}, timeout=10)
