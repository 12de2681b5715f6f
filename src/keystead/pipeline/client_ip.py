"""Who is calling: the client address behind trusted proxies, and IP allowlists (P4).

The forwarding header (`X-Forwarded-For` by default, or `Forwarded`: only the one the proxies
write, since most proxies pass the other one through from the client untouched) is believed only
when the peer is a configured trusted proxy, and then only as far as the chain of trusted proxies
goes: the client is the right-most address that is not one of ours. An empty or unreadable hop
makes the client unknown (None), which every allowlist refuses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["AddressResolver", "Network", "allowed", "networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_ADDRESS = ipaddress.IPv4Address | ipaddress.IPv6Address

_compiled: dict[tuple[str, ...], tuple[Network, ...]] = {}


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parsed CIDRs; a bare address is a /32 (or /128). Raises ValueError on a bad entry."""
    key = tuple(cidrs)
    found = _compiled.get(key)
    if found is None:
        found = tuple(ipaddress.ip_network(c.strip(), strict=False) for c in key)
        if len(_compiled) < 10_000:  # allowlists are few; never let this grow without bound
            _compiled[key] = found
    return found


def _address(text: str | None) -> _ADDRESS | None:
    if not text:
        return None
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port, as Forwarded writes it
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket is the IPv4 client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def allowed(client_ip: str | None, allowlist: Sequence[Network]) -> bool:
    address = _address(client_ip)
    return address is not None and any(address in network for network in allowlist)


def _forwarded_for(value: str) -> list[str]:
    """The `for=` addresses of a `Forwarded` header (RFC 7239), first hop first."""
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, text = pair.strip().partition("=")
            if name.lower() == "for":
                found.append(text.strip())
    return found


class AddressResolver:
    def __init__(self, trusted_proxies: Sequence[str], header: str = "x-forwarded-for"):
        self._trusted = networks(trusted_proxies)
        self._standard = header == "forwarded"  # RFC 7239 `Forwarded`, else X-Forwarded-For

    def _is_trusted(self, address: _ADDRESS | None) -> bool:
        return address is not None and any(address in network for network in self._trusted)

    def resolve(self, peer: str | None, forwarded_for: bytes | None,
                forwarded: bytes | None) -> str | None:
        value = forwarded if self._standard else forwarded_for
        if not self._trusted or value is None or not self._is_trusted(_address(peer)):
            return peer
        text = value.decode("latin-1")
        chain = _forwarded_for(text) if self._standard else text.split(",")
        client = peer
        for hop in reversed(chain):
            address = _address(hop)
            if address is None:
                return None  # the chain breaks at an unreadable hop: the client is unknown
            client = str(address)
            if not self._is_trusted(address):
                return client
        return client  # every hop was one of our proxies: the first is the client
