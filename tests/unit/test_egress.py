"""The egress guard: which addresses it refuses, and that it checks the address
it connects to (names, redirects) through a real httpx client and local servers."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import certifi
import httpx
import pytest

from flowctl.config import Settings
from flowctl.executors.base import StepContext
from flowctl.executors.http_request import HttpRequestExecutor
from flowctl.security.egress import (
    EgressDenied,
    EgressPolicy,
    GuardedTransport,
    _interleave_families,
    guarded_client,
    parse_networks,
)


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00:ec2::254", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "reserved (not public)"),
    ],
)
def test_what_is_refused_without_loopback(address: str, refusal: str | None) -> None:
    policy = EgressPolicy(allow_loopback=False)
    assert policy.refusal(ipaddress.ip_address(address)) == refusal


def test_loopback_and_allowlisted_networks_pass() -> None:
    local = EgressPolicy()  # local mode
    assert local.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert local.refusal(ipaddress.ip_address("10.0.0.1")) == "private"
    policy = EgressPolicy(allow=parse_networks("10.0.0.0/8, 192.168.1.5"), allow_loopback=False)
    assert policy.refusal(ipaddress.ip_address("10.9.9.9")) is None
    assert policy.refusal(ipaddress.ip_address("192.168.1.5")) is None
    assert policy.refusal(ipaddress.ip_address("192.168.1.6")) == "private"
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) == "loopback"


def test_settings_name_a_bad_network() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an IP address or network"):
        Settings(egress_allow="10.0.0.0/8,10.0.0.0/33")
    policy = EgressPolicy.from_settings(Settings(egress_allow="10.0.0.0/8", egress_loopback=False))
    assert policy == EgressPolicy(allow=parse_networks("10.0.0.0/8"), allow_loopback=False)


class _Handler(BaseHTTPRequestHandler):
    """/redirect?to=URL answers 302 to URL; anything else 200 with the path."""

    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(host: str) -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer((host, 0), _Handler)
    httpd.daemon_threads = True
    httpd.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def local() -> Iterator[ThreadingHTTPServer]:
    yield from _serve("127.0.0.1")


@pytest.fixture
def other_local() -> Iterator[ThreadingHTTPServer]:
    yield from _serve("127.0.0.2")  # Linux answers for all of 127.0.0.0/8


def _get(policy: EgressPolicy, url: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        async with guarded_client(policy, timeout=5, **kwargs) as client:
            return await client.get(url)

    return asyncio.run(go())


def _port(httpd: ThreadingHTTPServer) -> int:
    return httpd.server_address[1]


def test_an_allowed_address_is_reached(local) -> None:
    response = _get(EgressPolicy(), f"http://127.0.0.1:{_port(local)}/hello")
    assert response.status_code == 200 and response.text == "/hello"


def test_a_refused_address_is_never_connected_to(local) -> None:
    with pytest.raises(EgressDenied, match=r"127\.0\.0\.1 is a loopback address"):
        _get(EgressPolicy(allow_loopback=False), f"http://127.0.0.1:{_port(local)}/")
    assert local.hits == 0


def test_a_name_is_checked_on_the_address_it_resolves_to(local) -> None:
    with pytest.raises(EgressDenied, match=r"localhost \((127\.0\.0\.1|::1)\) is a loopback"):
        _get(EgressPolicy(allow_loopback=False), f"http://localhost:{_port(local)}/")
    assert local.hits == 0


def test_only_the_allowlisted_network_is_reached(local, other_local) -> None:
    policy = EgressPolicy(allow=parse_networks("127.0.0.2"), allow_loopback=False)
    response = _get(policy, f"http://127.0.0.2:{_port(other_local)}/ok")
    assert response.text == "/ok"
    with pytest.raises(EgressDenied):
        _get(policy, f"http://127.0.0.1:{_port(local)}/")
    assert local.hits == 0


def test_every_redirect_hop_is_checked(local) -> None:
    url = f"http://127.0.0.1:{_port(local)}/redirect?to=http://169.254.169.254/latest/meta-data"
    with pytest.raises(EgressDenied, match=r"169\.254\.169\.254 is a link-local"):
        _get(EgressPolicy(), url, follow_redirects=True)
    assert local.hits == 1


def test_the_http_request_step_type_uses_the_guard(local) -> None:
    ctx = StepContext(
        run_id="r",
        step_id="s",
        step_name="x",
        step_type="http.request",
        attempt=1,
        payload={"url": "http://10.20.30.40:9/"},
    )
    with pytest.raises(EgressDenied, match=r"10\.20\.30\.40 is a private address"):
        asyncio.run(HttpRequestExecutor().execute(ctx))


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("64:ff9b::808:808", None),  # NAT64 form of 8.8.8.8
        ("64:ff9b::a00:1", "private"),  # NAT64 form of 10.0.0.1
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 around 169.254.169.254
        ("2002:5db8:d822::1", None),  # 6to4 around 93.184.216.34
        ("fec0::1", "private"),  # deprecated site-local
    ],
)
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_carry(address, refusal) -> None:
    assert EgressPolicy(allow_loopback=False).refusal(ipaddress.ip_address(address)) == refusal


def test_families_alternate_when_connecting() -> None:
    v6a, v6b, v4a = (ipaddress.ip_address(a) for a in ("2001:db8::1", "2001:db8::2", "192.0.2.1"))
    assert _interleave_families([v6a, v6b, v4a]) == [v6a, v4a, v6b]
    assert _interleave_families([v4a]) == [v4a]
    assert _interleave_families([]) == []


def test_a_private_ca_from_the_environment_is_trusted(monkeypatch, tmp_path) -> None:
    # SSL_CERT_FILE (a private CA for internal services) is honoured; proxies are not.
    ca = tmp_path / "ca.pem"
    ca.write_text(
        Path(certifi.where()).read_text().split("-----END CERTIFICATE-----")[0]
        + "-----END CERTIFICATE-----\n"
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    transport = GuardedTransport(EgressPolicy())
    assert len(transport._pool._ssl_context.get_ca_certs()) == 1
    client = guarded_client(EgressPolicy())
    assert not client._mounts  # no proxy transport mounted
