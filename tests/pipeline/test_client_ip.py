"""Client addresses behind trusted proxies, and allowlist matching."""

from __future__ import annotations

import pytest

from keystead.pipeline.client_ip import AddressResolver, allowed, networks

PROXIES = AddressResolver(["10.0.0.0/8", "fd00::/8"])
STANDARD = AddressResolver(["10.0.0.0/8", "fd00::/8"], header="forwarded")


def test_without_trusted_proxies_the_headers_are_ignored():
    assert AddressResolver([]).resolve("203.0.113.9", b"1.2.3.4", None) == "203.0.113.9"


def test_headers_from_an_untrusted_peer_are_ignored():
    assert PROXIES.resolve("198.51.100.7", b"1.2.3.4", None) == "198.51.100.7"


@pytest.mark.parametrize(("forwarded_for", "client"), [
    (b"203.0.113.5", "203.0.113.5"),
    # The client wrote its own X-Forwarded-For; our proxies appended the real address after it.
    (b"6.6.6.6, 203.0.113.5, 10.1.1.1", "203.0.113.5"),
    (b"203.0.113.5:51234", "203.0.113.5"),
    # Every hop is ours: the first is the client.
    (b"10.9.9.9, 10.1.1.1", "10.9.9.9"),
])
def test_x_forwarded_for_is_walked_from_the_right(forwarded_for, client):
    assert PROXIES.resolve("10.0.0.1", forwarded_for, None) == client


def test_forwarded_header_with_ipv6_and_ports():
    header = b'for=6.6.6.6, for="[2001:db8::17]:4711";proto=https, for=10.2.2.2'
    assert STANDARD.resolve("10.0.0.1", None, header) == "2001:db8::17"


def test_only_the_configured_header_is_read():
    # nginx and ALBs append to X-Forwarded-For but pass a client's Forwarded through untouched.
    assert PROXIES.resolve("10.0.0.2", b"203.0.113.9", b"for=198.51.100.7") == "203.0.113.9"
    assert PROXIES.resolve("10.0.0.2", None, b"for=198.51.100.7") == "10.0.0.2"
    assert STANDARD.resolve("10.0.0.2", b"198.51.100.7", b"for=203.0.113.9") == "203.0.113.9"


@pytest.mark.parametrize("chain", [b"1.2.3.4, unknown", b"1.2.3.4, ", b"", b"x" * 100])
def test_an_unreadable_or_empty_hop_makes_the_client_unknown(chain):
    assert PROXIES.resolve("10.0.0.1", chain, None) is None
    forwarded = b", ".join(b"for=" + hop.strip() for hop in chain.split(b","))
    assert STANDARD.resolve("10.0.0.1", None, forwarded) is None
    assert not allowed(None, networks(["0.0.0.0/0", "::/0"]))


def test_allowlists_match_v4_v6_and_mapped_addresses():
    allow = networks(["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"])
    assert allowed("192.0.2.200", allow)
    assert allowed("2001:db8:1::1", allow)
    assert allowed("198.51.100.7", allow)
    assert allowed("::ffff:192.0.2.1", allow)  # IPv4 seen through a dual-stack socket
    assert not allowed("198.51.100.8", allow)
    assert not allowed(None, allow)


def test_a_bad_cidr_is_an_error():
    with pytest.raises(ValueError):
        networks(["10.0.0.0/33"])
