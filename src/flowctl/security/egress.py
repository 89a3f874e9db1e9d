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
import socket
import ssl
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


def _category(address: IPAddress) -> str | None:
    """Why `address` is not a public one, or None if it is."""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
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
        last: Exception | None = None
        for address in allowed:
            try:
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
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
        super().__init__(verify=verify, trust_env=False)
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
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
