"""Free text an operator types (reasons, descriptions, owners, a looked-up name): any secret in
it is masked before it is stored, logged or sent (`guard.detect.redact`).

The detectors are loaded on the first text that needs them: most commands type none, and the
CLI's start-up should not pay for their regular expressions.
"""

from __future__ import annotations

__all__ = ["redact"]


def redact(text: str | None) -> str | None:
    if not text:
        return text
    from keystead.guard.detect import redact as mask_secrets

    return mask_secrets(text)
