"""The IANA special-purpose address registries (IPv4 and IPv6) and the IPv6 address space registry, as a table:
which blocks are globally reachable. Python's `ipaddress.is_global` misses some of them, and which ones depends on
the Python patch release (3.11.7 counts the deprecated site-local `fec0::/10`, `64:ff9b:1::/48` and the
documentation block `3fff::/20` as global, and 2001:3::/32 and other reachable anycast blocks as not), so the
public-addresses policy decides with this table first.

Sources: https://www.iana.org/assignments/iana-ipv4-special-registry,
https://www.iana.org/assignments/iana-ipv6-special-registry, https://www.iana.org/assignments/ipv6-address-space.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# (block, globally reachable, what it is). Blocks the registries list as "N/A" are not reachable destinations of
# their own and are listed as not reachable, except the forms that carry an IPv4 address (::ffff:0:0/96,
# 64:ff9b::/96, 6to4, Teredo), which `hosts.py` decides by the address they carry.
_BLOCKS: tuple[tuple[str, bool, str], ...] = (
    # IPv4
    ("0.0.0.0/8", False, "a 'this network' address"),
    ("0.0.0.0/32", False, "the unspecified address"),
    ("10.0.0.0/8", False, "a private address"),
    ("100.64.0.0/10", False, "a shared (carrier-grade NAT) address"),
    ("127.0.0.0/8", False, "a loopback address"),
    ("169.254.0.0/16", False, "a link-local address"),
    ("172.16.0.0/12", False, "a private address"),
    ("192.0.0.0/24", False, "an IETF protocol assignment"),
    ("192.0.0.9/32", True, "the PCP anycast address"),
    ("192.0.0.10/32", True, "the TURN anycast address"),
    ("192.0.2.0/24", False, "a documentation address"),
    ("192.31.196.0/24", True, "the AS112 service"),
    ("192.52.193.0/24", True, "the AMT service"),
    ("192.88.99.0/24", False, "a deprecated 6to4 relay anycast address"),
    ("192.168.0.0/16", False, "a private address"),
    ("192.175.48.0/24", True, "the AS112 direct delegation service"),
    ("198.18.0.0/15", False, "a benchmarking address"),
    ("198.51.100.0/24", False, "a documentation address"),
    ("203.0.113.0/24", False, "a documentation address"),
    ("224.0.0.0/4", False, "a multicast address"),
    ("240.0.0.0/4", False, "a reserved address"),
    ("255.255.255.255/32", False, "the limited broadcast address"),
    # IPv6
    ("::/128", False, "the unspecified address"),
    ("::1/128", False, "a loopback address"),
    ("64:ff9b:1::/48", False, "a local-use IPv4/IPv6 translation address"),
    ("100::/64", False, "a discard-only address"),
    ("100:0:0:1::/64", False, "a dummy IPv6 prefix address"),
    ("2001::/23", False, "an IETF protocol assignment"),
    ("2001:1::1/128", True, "the PCP anycast address"),
    ("2001:1::2/128", True, "the TURN anycast address"),
    ("2001:1::3/128", True, "the DNS-SD service registration anycast address"),
    ("2001:2::/48", False, "a benchmarking address"),
    ("2001:3::/32", True, "the AMT service"),
    ("2001:4:112::/48", True, "the AS112 service"),
    ("2001:10::/28", False, "a deprecated ORCHID address"),
    ("2001:20::/28", True, "an ORCHIDv2 address"),
    ("2001:30::/28", True, "a drone remote ID address"),
    ("2001:db8::/32", False, "a documentation address"),
    ("2620:4f:8000::/48", True, "the AS112 direct delegation service"),
    ("3fff::/20", False, "a documentation address"),
    ("5f00::/16", False, "an SRv6 SID address"),
    ("fc00::/7", False, "a unique local address"),
    ("fe80::/10", False, "a link-local address"),
    ("fec0::/10", False, "a site-local address (deprecated)"),
    ("ff00::/8", False, "a multicast address"),
)
# most specific first, so an exception (2001:3::/32) wins over its block (2001::/23)
BLOCKS: tuple[tuple[Network, bool, str], ...] = tuple(
    sorted(
        ((ipaddress.ip_network(block), reachable, what) for block, reachable, what in _BLOCKS),
        key=lambda row: -row[0].prefixlen,
    )
)
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")  # the rest of IPv6 is reserved by the IETF


def registry_verdict(ip: IPAddress) -> tuple[bool, str] | None:
    """(globally reachable, what the block is) from the most specific registry block holding `ip`; for IPv6
    outside 2000::/3 and every listed block, (False, reserved); None when no registry says anything."""
    for network, reachable, what in BLOCKS:
        if ip.version == network.version and ip in network:
            return reachable, what
    if isinstance(ip, ipaddress.IPv6Address) and ip not in GLOBAL_UNICAST_V6:
        return False, "an IPv6 address outside the global unicast space 2000::/3 (reserved by the IETF)"
    return None
