"""Guardrails on request content (P8, P21): secrets and personal data in prompts."""
