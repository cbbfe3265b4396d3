"""Refuse outbound HTTP targets inside our own network (server-side request forgery).

Shared by notify (webhook URLs) and ingest (feed URLs): both are chosen by users and then
fetched or POSTed to from inside the deployment. Without a check, ``http://169.254.169.254/...`` or
``http://redis:6379`` would let a subscriber reach the cloud metadata service or internal
hosts. So a URL is refused when its host *resolves* to an address that is not globally
routable: loopback, RFC 1918 private, link-local, unique-local (fc00::/7), CGNAT, multicast,
unspecified, reserved, or a cloud metadata address; IPv4 hidden inside IPv6 (mapped, 6to4,
Teredo, NAT64) is unwrapped and checked too.

The check runs at creation (clear error for the subscriber) and again at every delivery or
feed fetch, because DNS answers change. To close the gap between "checked" and "connected"
(DNS rebinding), both connect to the very address that was checked (feeds through
``pinned_stream`` and httpx; webhooks through notify's own HTTP/1.1 sender, which opens its
connection to ``CheckedTarget.addresses[0]``): the request goes to the IP, with the original
``Host`` header and the original name for TLS SNI and certificate verification (httpx's
``sni_hostname`` extension, asyncio's ``server_hostname``).

``TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS=true`` lifts the private-address rule for development and
tests (a receiver on 127.0.0.1). Cloud metadata addresses stay refused even then: no
legitimate alert receiver lives there, and it is the one target that leaks credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})

#: Instance metadata endpoints of the common clouds: refused whatever the settings say.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS / Time Sync
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURLError(ValueError):
    """A webhook URL that may not be used; ``reason`` says why, for the API error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResolutionError(OSError):
    """The host did not resolve right now (worth retrying at delivery time)."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@functools.lru_cache(maxsize=4096)
def address_refusal(ip: IPAddress, allow_private: bool = False) -> str | None:
    """Why ``ip`` may not be a webhook target, or ``None`` when it may.

    Pure in its arguments and asked for every webhook sent (each ``is_*`` property tests
    network membership), so remembered per address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = address_refusal(inner, allow_private)
            return f"{why} (embedded in {ip})" if why else None
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if allow_private:
        return None
    for flag, label in (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
    ):
        if flag:
            return f"{ip} is a {label} address"
    if not ip.is_global:
        return f"{ip} is not a globally routable address"
    return None


@functools.lru_cache(maxsize=4096)
def parse_webhook_url(url: str) -> httpx.URL:
    """Syntax checks that need no DNS: scheme, host, no metadata host names.

    Remembered per URL text (a refusal is not: it raises): every delivery checks its URL
    again, and parsing was a tenth of a webhook's CPU at fan-out rates. The result depends
    on the text alone; what can change, the DNS answer, is looked up on every call of
    ``check_webhook_url``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeURLError(f"not a valid URL: {exc}") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise UnsafeURLError(
            f"scheme {parsed.scheme or '(none)'!r} is not allowed: use http or https"
        )
    host = parsed.host.rstrip(".").lower()
    if not host:
        raise UnsafeURLError("URL has no host")
    if host in METADATA_HOSTNAMES:
        raise UnsafeURLError(f"{host} is a cloud metadata host")
    return parsed


async def system_resolver(host: str, port: int) -> list[str]:
    """All addresses the OS resolver returns for ``host`` (A and AAAA)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolutionError(f"{host} does not resolve: {exc.strerror}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    """A URL whose host resolved only to allowed addresses; connect to ``addresses[0]``."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]

    def pinned(self) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
        """(URL with the checked IP as host, extra headers, request extensions).

        Sending to the IP keeps a second, different DNS answer from being used; ``Host`` and
        ``sni_hostname`` keep virtual hosting and certificate verification on the real name.
        """
        ip = self.addresses[0]
        host = self.url.host
        try:
            ipaddress.ip_address(host)
            return self.url, {}, {}  # already a literal address
        except ValueError:
            pass
        netloc = self.url.netloc.decode("ascii")
        if "@" in netloc:
            netloc = netloc.rsplit("@", 1)[1]
        headers = {"Host": netloc}
        extensions = {"sni_hostname": host} if self.url.scheme == "https" else {}
        return self.url.copy_with(host=str(ip)), headers, extensions


@contextlib.asynccontextmanager
async def pinned_stream(
    client: httpx.AsyncClient,
    method: str,
    target: CheckedTarget,
    *,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[httpx.Response]:
    """``client.stream(method, ...)`` to the address that was checked, never to a new lookup.

    The one way topicwatch sends a request to a user-chosen URL (webhooks and feeds alike), so
    the checked address is the one connected to. ``response.url`` carries the IP: callers
    resolve relative references against ``target.url`` instead. ``client`` must not follow
    redirects (each hop needs its own check) and should have ``trust_env=False`` (a proxy from
    the environment would resolve the name again on our behalf).
    """
    url, pin_headers, extensions = target.pinned()
    async with client.stream(
        method,
        url,
        headers={**(headers or {}), **pin_headers},
        extensions=extensions,
        follow_redirects=False,
        **kwargs,
    ) as response:
        yield response


async def check_webhook_url(
    url: str, *, allow_private: bool = False, resolver: Resolver | None = None
) -> CheckedTarget:
    """Resolve ``url``'s host and refuse it unless *every* address is allowed.

    Every address, not just the first: a name answering with one public and one private
    address would otherwise let a later connection land on the private one.
    Raises ``UnsafeURLError`` (refused) or ``ResolutionError`` (DNS failed; retry later).
    """
    parsed = parse_webhook_url(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        raw = [str(literal)]
    else:
        raw = await (resolver or system_resolver)(host, port)
        if not raw:
            raise ResolutionError(f"{host} resolved to no address")
    addresses: list[IPAddress] = []
    for text in raw:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        why = address_refusal(ip, allow_private)
        if why:
            if literal is not None:
                raise UnsafeURLError(f"webhook host {why}")
            raise UnsafeURLError(f"webhook host {host} resolves to {ip}: {why}")
        addresses.append(ip)
    return CheckedTarget(url=parsed, addresses=tuple(addresses))
