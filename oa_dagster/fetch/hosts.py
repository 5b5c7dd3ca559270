"""Public addresses only: the download policy of CI jobs, which run sources from untrusted pull requests.

A source's URL could otherwise make the platform fetch from itself (127.0.0.1, `localhost`), its private
network, or the cloud metadata service (169.254.169.254) and publish the answer as "source data". With
`FetchOptions.public_hosts_only`, every connection (HTTP and HTTPS including each redirect hop, ArcGIS requests,
the FTP control connection) resolves its host once, checks **every** address the name resolves to, and then
connects to those checked addresses: there is no second lookup a rebinding DNS server could answer differently.
FTP data connections go to the control connection's address (`ftplib` ignores the address in a PASV reply).

`FetchOptions.allowed_hosts` names exceptions (tests, a local mirror), as `parse_allowed_hosts` reads them:
a host name as URLs write it (any address it resolves to is then allowed) or an IP address (allowed
whatever name leads to it), either optionally with `:port` (`[v6]:port` for IPv6) to allow only that port.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family, create_connection

from oa_dagster.fetch.options import FetchOptions, LimitExceeded
from oa_dagster.fetch.special_addresses import registry_verdict

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
WHY = "CI jobs download from public addresses only (OA_CI_ALLOW_HOSTS names exceptions)"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class HostRefused(LimitExceeded):
    """A connection refused by the public-addresses policy: not retried, and no fallback asks again."""


def _host_key(host: str) -> str:
    """A host as compared: lower case, no trailing dot or IPv6 brackets, IP addresses in their compact form."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _entry(host: str, port: int | None) -> str:
    key = _host_key(host)
    if port is None:
        return key
    return f"[{key}]:{port}" if ":" in key else f"{key}:{port}"


def parse_allowed_hosts(text: str | None) -> frozenset[str]:
    """`OA_CI_ALLOW_HOSTS` as a set of allowlist entries: comma- or space-separated `host`, `host:port`, an IP
    address, `[v6]:port` or a bare IPv6 address. Raises ValueError naming a malformed entry."""
    entries: set[str] = set()
    for item in (text or "").replace(",", " ").split():
        host, port = item, None
        if item.startswith("["):
            close = item.find("]")
            rest = item[close + 1 :] if close > 0 else "?"
            if close < 0 or (rest and not rest.startswith(":")):
                raise ValueError(f"allowed host {item!r}: expected [IPv6] or [IPv6]:port")
            host, port = item[1:close], rest[1:] or None
        elif item.count(":") == 1:
            host, port = item.split(":")
        if not host or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
            raise ValueError(f"allowed host {item!r}: expected host, host:port or an IP address")
        entries.add(_entry(host, int(port) if port is not None else None))
    return frozenset(entries)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, Teredo client), which it may reach."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def non_public(ip: IPAddress) -> str | None:
    """Why `ip` is no public address ("a loopback address", ...), or None when it is one: an address carrying an
    IPv4 address by that one, else by the IANA registries (`special_addresses.py`), else by `ipaddress`."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        why = non_public(inner)
        if why is not None:
            return f"an IPv6 form of {inner}, {why}"
        if ip.ipv4_mapped is not None or ip in _NAT64:  # only a way to write (or reach) a public IPv4 address
            return None
    verdict = registry_verdict(ip)
    if verdict is not None:
        reachable, what = verdict
        return None if reachable else what
    checks: tuple[tuple[Callable[[IPAddress], bool], str], ...] = (  # what the registries do not list
        (lambda a: a.is_unspecified, "the unspecified address"),
        (lambda a: a.is_loopback, "a loopback address"),
        (lambda a: a.is_link_local, "a link-local address"),
        (lambda a: a.is_multicast, "a multicast address"),
        (lambda a: a.is_private, "a private address"),
        (lambda a: a.is_reserved, "a reserved address"),
        (lambda a: not a.is_global, "an address that is not globally reachable"),  # e.g. CGNAT 100.64/10
    )
    return next((why for test, why in checks if test(ip)), None)


@dataclass(frozen=True)
class HostPolicy:
    """Which addresses a connection may reach: public ones, and those `allowed` names."""

    allowed: frozenset[str] = frozenset()

    @classmethod
    def of(cls, options: FetchOptions) -> HostPolicy | None:
        """The options' policy, or None when downloads may go anywhere (the default outside CI)."""
        if not options.public_hosts_only:
            return None
        return cls(frozenset(_allowlist_key(a) for a in options.allowed_hosts))

    def _names(self, host: str, port: int) -> bool:
        return _entry(host, None) in self.allowed or _entry(host, port) in self.allowed

    def resolve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[tuple[Any, ...]]:
        """`getaddrinfo` answers for `host`, once, after checking every address they hold.

        Connect to these answers' socket addresses, never to `host` again. Raises `HostRefused` when any
        address is not public and not allowed (a name with a public and a private address is refused: which
        one a connection gets is the resolver's choice, not ours), `socket.gaierror` when the name does not
        resolve.
        """
        answers = socket.getaddrinfo(host.strip("[]"), port, family, socket.SOCK_STREAM)
        if self._names(host, port):
            return answers
        for answer in answers:
            address = str(answer[4][0]).split("%")[0]  # drop an IPv6 zone
            ip = ipaddress.ip_address(address)
            why = non_public(ip)
            if why is not None and not self._names(str(ip), port):
                said = _host_key(host)
                what = f"address {ip} is" if said == str(ip) else f"host {said} resolves to {ip},"
                raise HostRefused(f"{what} {why}: {WHY}; no connection was made")
        return answers


def _allowlist_key(entry: str) -> str:
    """An `allowed_hosts` entry in the form `parse_allowed_hosts` gives, so hand-built sets match too."""
    try:
        parsed = parse_allowed_hosts(entry)
    except ValueError:
        return _host_key(entry)  # matches nothing a URL can name; refusing later says which host was refused
    return next(iter(parsed)) if len(parsed) == 1 else _host_key(entry)


def connect_checked(policy: HostPolicy, host: str, port: int, **kwargs: Any) -> socket.socket:
    """A socket connected to the first reachable checked address of `host` (`create_connection` arguments).

    Each address is an IP literal, so connecting to it asks no resolver again.
    """
    answers = policy.resolve(host, port, allowed_gai_family())
    error: OSError | None = None
    for answer in answers:
        try:
            return create_connection((str(answer[4][0]), port), **kwargs)
        except OSError as exc:
            error = exc
    raise error or OSError(f"no address for {host}")


class _CheckedConnection:
    """Mixin for urllib3 connections: `_new_conn` connects through `connect_checked`; the host name stays the
    connection's `host`, so TLS still sends it as SNI and checks the certificate against it."""

    policy: HostPolicy
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        try:
            sock = connect_checked(
                self.policy,
                self._dns_host,
                self.port,
                timeout=self.timeout,
                source_address=self.source_address,
                socket_options=self.socket_options,
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


class PublicHostsAdapter(requests.adapters.HTTPAdapter):
    """An `HTTPAdapter` whose every connection (redirect hops included) goes through `HostPolicy.resolve`.

    Proxies are refused: a proxy would make the connection on our behalf, to an address we never checked.
    """

    def __init__(self, policy: HostPolicy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        attrs = {"policy": self.policy}
        http = type("CheckedHTTPConnection", (_CheckedConnection, HTTPConnection), attrs)
        https = type("CheckedHTTPSConnection", (_CheckedConnection, HTTPSConnection), attrs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("CheckedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("CheckedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> urllib3.PoolManager:
        raise HostRefused(f"a proxy ({urllib3.util.parse_url(proxy).host}) would connect unchecked: {WHY}")
