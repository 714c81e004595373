"""Keep webhooks and job callbacks from reaching inside our own network (SSRF).

A user-supplied URL must not make a worker talk to loopback, private ranges or a cloud
metadata service. Checking the URL when the job is accepted is not enough: DNS can answer
differently a moment later (rebinding). So the check runs inside the connection itself:
`GuardedBackend` resolves the host, refuses forbidden addresses, and connects only to
the addresses it checked, while TLS (SNI, certificate) and the Host header keep using the
name from the URL, because httpcore gives the backend the name, not a socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import httpcore
import httpx
import idna

from service import outbound
from service.errors import PermanentError, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_LENGTH = 2048
CLOUD_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")


def _invalid_url(message: str) -> PermanentError:
    return PermanentError(message, type="invalid_url")


def validate_url(url: object, *, max_length: int = MAX_URL_LENGTH) -> str:
    """The cheap check for the API: an http(s) URL with a host, of bounded length."""
    if not isinstance(url, str) or not url:
        raise _invalid_url("the URL must be a non-empty string")
    if len(url) > max_length:
        raise _invalid_url(f"the URL is longer than {max_length} characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise _invalid_url("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [IPv6 literal
        raise _invalid_url("the URL is not valid") from None
    if parts.scheme not in ("http", "https"):
        raise _invalid_url("the URL must start with http:// or https://")
    if not parts.hostname:
        raise _invalid_url("the URL has no host")
    ascii_host(parts.hostname)
    try:
        _ = parts.port  # reading it parses it
    except ValueError:
        raise _invalid_url("the URL has an invalid port") from None
    return url


def ascii_host(host: str) -> str:
    """The host as DNS and TLS see it: IDNA (UTS #46) for a name that is not ASCII.

    Names with characters IDNA refuses (bidi overrides, spaces, symbols) are invalid
    URLs, rather than errors of the resolver's older IDNA codec when we connect."""
    if _literal(host):
        return host
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise _invalid_url(f"the host is not a valid internationalised domain name ({exc})") from None
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(0 < len(label) <= 63 for label in labels):
        raise _invalid_url("the host has an empty label or one longer than 63 characters")
    return host


class AllowList:
    """`CALLBACK_ALLOWED_HOSTS`: hostnames, IP addresses or CIDR ranges let through anyway."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.hostnames: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            entry = entry.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.hostnames.add(entry)

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hostnames

    def allows_ip(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def forbidden_reason(address: IPAddress) -> str | None:
    """Why this address is not on the public internet, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return forbidden_reason(address.ipv4_mapped)
    checks = (
        (address in CLOUD_METADATA, "cloud metadata"),
        (address.is_loopback, "loopback"),
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in CARRIER_GRADE_NAT, "carrier-grade NAT"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "not globally routable"),
    )
    return next((reason for matched, reason in checks if matched), None)


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order, without blocking the loop."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientError(f"cannot resolve {host}: {exc.strerror}", type="dns_failed") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def allowed_addresses(host: str, port: int, allow: AllowList, resolver: Resolver = resolve) -> list[str]:
    """The addresses to try for `host`, refusing the host if any address it has is forbidden."""
    literal = _literal(host)
    addresses = [str(literal)] if literal else await resolver(host, port)
    if not addresses:
        raise TransientError(f"{host} has no address", type="dns_failed")
    if allow.allows_host(host):
        return addresses
    for address in addresses:
        ip = ipaddress.ip_address(address)
        reason = forbidden_reason(ip)
        if reason and not allow.allows_ip(ip):
            shown = host if literal else f"{host} ({address})"
            raise PermanentError(
                f"refusing to connect to {shown}: {reason} address; list it in CALLBACK_ALLOWED_HOSTS to allow it",
                type="destination_refused",
            )
    return addresses


async def check_destination(url: str, allowed_hosts: Iterable[str], resolver: Resolver = resolve) -> list[str]:
    """Validate and resolve `url` now (e.g. when a job is accepted); returns its addresses.

    Sending checks again at connect time, so this is an early answer, not the guard.
    """
    parts = urlsplit(validate_url(url))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return await allowed_addresses(ascii_host(parts.hostname or ""), port, AllowList(allowed_hosts), resolver)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to checked addresses."""

    def __init__(self, allow: AllowList, inner: httpcore.AsyncNetworkBackend, resolver: Resolver = resolve) -> None:
        self.allow = allow
        self.inner = inner
        self.resolver = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await allowed_addresses(host, port, self.allow, self.resolver)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout}s") from None
        # Only checked addresses, in the resolver's order (e.g. ::1 then 127.0.0.1).
        for address in addresses[:-1]:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue
        return await self.inner.connect_tcp(addresses[-1], port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, *args: object, **kwargs: object) -> httpcore.AsyncNetworkStream:
        raise PermanentError("unix sockets are not a callback destination", type="destination_refused")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_client(
    allowed_hosts: Iterable[str],
    *,
    timeout: float,
    resolver: Resolver = resolve,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An httpx client for user-supplied URLs: guarded connects, no redirects, no proxies."""
    transport = httpx.AsyncHTTPTransport(verify=verify, trust_env=False)
    # httpx has no public hook for the network backend; its pool hands this attribute to
    # every connection it opens (httpcore 1.x, pinned).
    pool = transport._pool
    pool._network_backend = GuardedBackend(AllowList(allowed_hosts), pool._network_backend, resolver)
    return httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False, headers=outbound.HEADERS
    )
