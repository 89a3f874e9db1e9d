"""The egress guard: where flowctl may open outbound connections.

Every outbound HTTP client (the `http.request` and `webhook` step types, agents
and their cards, the agent health check) connects through `GuardedTransport`,
whose network backend resolves the host itself and connects only to an address
the policy allows: no private, loopback, link-local (cloud metadata:
169.254.169.254), multicast, reserved or otherwise non-public address unless
the operator allowlists its network (FLOWCTL_EGRESS_ALLOW); httpx itself speaks
only http and https. Loopback is allowed in local mode (no API auth, which is
every server today; FLOWCTL_EGRESS_LOOPBACK=false turns it off).

The check is made on the address actually connected to, after resolution, so a
name that resolves to an internal address (or is re-pointed at one between a
check and the request) is refused, and so is each redirect hop, since it opens
its own connection. Proxies from the environment are not used: a proxy would
make the connection for us, where the guard cannot see it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_SETTING = "FLOWCTL_EGRESS_ALLOW"


class EgressDenied(Exception):
    """An outbound connection the egress guard refused (not retryable)."""


def parse_networks(value: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """'10.0.0.0/8, 192.168.1.5' -> networks (a bare address is a /32 or /128)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    networks = []
    for item in (i.strip() for i in items):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (CIDR)") from None
    return tuple(networks)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: IPv4 hosts seen from IPv6-only networks


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _category(address: IPAddress) -> str | None:
    """Why `address` is not a public one, or None if it is."""
    if address.version == 6:
        if (inner := _embedded_ipv4(address)) is not None:
            return _category(inner)
        if address.is_site_local:
            return "private"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"  # where cloud metadata services live
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved (not public)"
    return None


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    allow: tuple[IPNetwork, ...] = ()
    allow_loopback: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> EgressPolicy:
        return cls(
            allow=parse_networks(settings.egress_allow),
            allow_loopback=settings.egress_loopback,
        )

    def refusal(self, address: IPAddress) -> str | None:
        """What kind of address refused `address` is ("private", ...), or None
        if a connection to it is allowed."""
        category = _category(address)
        if category is None or any(address in network for network in self.allow):
            return None
        if category == "loopback" and self.allow_loopback:
            return None
        return category


def _interleave_families(addresses: list[IPAddress]) -> list[IPAddress]:
    """[v6a, v6b, v4a] -> [v6a, v4a, v6b]: the first family first, then alternating."""
    if not addresses:
        return addresses
    first = [a for a in addresses if a.version == addresses[0].version]
    other = [a for a in addresses if a.version != addresses[0].version]
    return [a for pair in itertools.zip_longest(first, other) for a in pair if a is not None]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking every address first."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend | None = None):
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from None
        # Scoped IPv6 link-local addresses come back as "fe80::1%eth0".
        addresses = list(
            dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
        )
        allowed = [a for a in addresses if self.policy.refusal(a) is None]
        if not allowed:
            first = addresses[0]
            what = f"{first}" if host.strip("[]") == str(first) else f"{host} ({first})"
            raise EgressDenied(
                f"egress guard: {what} is a {self.policy.refusal(first)} address, which "
                f"outbound calls may not reach; allowlist its network with {ALLOW_SETTING}"
            )
        # Resolving and connecting share one timeout, as when httpcore resolves.
        # What is left is split between the addresses still to try, families
        # alternating, so one that never answers (a broken IPv6 route) leaves
        # time for the next.
        allowed = _interleave_families(allowed)
        last: Exception | None = None
        for index, address in enumerate(allowed):
            share = None
            if deadline is not None:
                share = max(0.0, deadline - time.monotonic()) / (len(allowed) - index)
            try:
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=share,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options=None
    ):
        raise EgressDenied("egress guard: Unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a pool that connects through GuardedBackend. (httpx
    0.28 takes no network backend; httpcore's pool, which it wraps, does.)"""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
    ):
        # trust_env here only reads SSL_CERT_FILE / SSL_CERT_DIR (a private CA);
        # no proxy is used, whatever the environment says.
        super().__init__(verify=verify, trust_env=False)
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=True),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(policy: EgressPolicy, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx.AsyncClient whose every connection passes the egress guard."""
    verify = kwargs.pop("verify", True)
    return httpx.AsyncClient(
        transport=GuardedTransport(policy, verify=verify), trust_env=False, **kwargs
    )
