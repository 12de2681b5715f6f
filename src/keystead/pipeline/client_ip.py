"""Who is calling: the client address behind trusted proxies, and IP allowlists (P4).

`X-Forwarded-For` and `Forwarded` are believed only when the peer is a configured trusted proxy,
and then only as far as the chain of trusted proxies goes: the client is the right-most address
that is not one of ours. Anyone can write those headers; only our own proxies' entries count.
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
    def __init__(self, trusted_proxies: Sequence[str]):
        self._trusted = networks(trusted_proxies)

    def _is_trusted(self, address: _ADDRESS | None) -> bool:
        return address is not None and any(address in network for network in self._trusted)

    def resolve(self, peer: str | None, forwarded_for: bytes | None,
                forwarded: bytes | None) -> str | None:
        if not self._trusted or (forwarded_for is None and forwarded is None):
            return peer
        if not self._is_trusted(_address(peer)):
            return peer
        chain = (_forwarded_for(forwarded.decode("latin-1")) if forwarded is not None
                 else forwarded_for.decode("latin-1").split(",") if forwarded_for is not None
                 else [])
        client = peer
        for hop in reversed(chain):
            address = _address(hop)
            if address is None:
                # An entry we cannot read ends the trusted chain; an unreadable client is
                # reported as such, and an allowlist refuses it.
                return hop.strip() or client
            client = str(address)
            if not self._is_trusted(address):
                return client
        return client  # every hop was one of our proxies: the first is the client
