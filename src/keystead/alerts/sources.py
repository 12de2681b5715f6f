"""Where a key is used from, coarsely: its client's network and its user agent's family.

The ledger writer records each (key, source) the first time it sees it (`key_sightings`), so the
new_source rule reads one small indexed table instead of scanning the ledger. Networks are /24
(IPv4) or /48 (IPv6): a client moving between addresses of one provider is not "new". A family is
the user agent's first product name without its version ("OpenAI/Python 1.54.0" -> openai/python,
"curl/8.5.0" -> curl), reduced to a small character set: it comes from the client.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from keystead.state.records import KeySighting, UsageRecord

__all__ = ["SightingFilter", "agent_family", "network_of"]

_FAMILY_CHARS = re.compile(r"[^a-z0-9._/-]")
_VERSION = re.compile(r"^v?\d")


def network_of(address: str | None) -> str | None:
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def agent_family(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    token = user_agent.strip().split(" ", 1)[0].lower()
    name, _, rest = token.partition("/")
    if rest and not _VERSION.match(rest):  # "openai/python": a product with a sub-name
        name = f"{name}/{rest.split('/', 1)[0]}"
    family = _FAMILY_CHARS.sub("", name)[:48].strip("./-")
    return family or None


def sightings_of(record: UsageRecord) -> list[KeySighting]:
    """The sources of one ledger row of an authenticated request (none for a refused key)."""
    if record.key_id is None or (record.status == 401 and record.provider is None):
        return []
    found = []
    network = network_of(record.client_ip)
    if network is not None:
        found.append(KeySighting(record.key_id, "net", network, record.ts))
    family = agent_family(record.user_agent)
    if family is not None:
        found.append(KeySighting(record.key_id, "ua", family, record.ts))
    return found


class SightingFilter:
    """Remembers which sources this process recorded already, so that a batch of the ledger
    writes only the new ones (usually none). Bounded: past `max_entries` it starts over (the
    store ignores what it knows), and a key keeps at most `per_key` sources of each kind."""

    def __init__(self, max_entries: int = 100_000, per_key: int = 1000):
        self._known: set[tuple[str, str, str]] = set()
        self._raw: set[tuple[str | None, str | None, str | None]] = set()
        self._per_key: dict[tuple[str, str], int] = {}
        self._max = max_entries
        self._cap = per_key

    def new(self, records: Iterable[UsageRecord]) -> list[KeySighting]:
        fresh: list[KeySighting] = []
        for record in records:
            # The same client again (the usual case): no address parsing at all.
            raw = (record.key_id, record.client_ip, record.user_agent)
            if raw in self._raw:
                continue
            if len(self._raw) >= self._max:
                self._raw.clear()
            self._raw.add(raw)
            for sighting in sightings_of(record):
                entry = (sighting.key_id, sighting.kind, sighting.value)
                if entry in self._known:
                    continue
                counted = (sighting.key_id, sighting.kind)
                if self._per_key.get(counted, 0) >= self._cap:
                    continue
                if len(self._known) >= self._max:
                    self._known.clear()
                    self._per_key.clear()
                self._known.add(entry)
                self._per_key[counted] = self._per_key.get(counted, 0) + 1
                fresh.append(sighting)
        return fresh

    def forget(self, sightings: Iterable[KeySighting]) -> None:
        """They were not written: try them again with a later batch."""
        self._raw.clear()  # (coarse, and rare: the store failed)
        for s in sightings:
            entry = (s.key_id, s.kind, s.value)
            if entry in self._known:
                self._known.discard(entry)
                counted = (s.key_id, s.kind)
                self._per_key[counted] = max(0, self._per_key.get(counted, 1) - 1)
