"""Alerts that reach a person (P24): rules over the store, the counters and the config,
evaluated by every gateway, sent once across replicas to Slack, a signed webhook or e-mail.

    gather (gather.py) -> rules (rules/) -> transitions in the store (engine.py)
      -> messages (messages.py) -> channels (channels/)

`AlertEngine` runs in the gateway; `AlertService` serves `keystead alerts` and /admin/alerts.
"""

from __future__ import annotations

__all__: list[str] = []
