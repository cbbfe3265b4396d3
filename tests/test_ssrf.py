"""SSRF refusals: addresses, schemes, resolution (the system resolver and scripted answers)."""

from __future__ import annotations

import ipaddress

import pytest

from services.common.ssrf import (
    ResolutionError,
    UnsafeURLError,
    address_refusal,
    check_webhook_url,
    parse_webhook_url,
)


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),  # unique-local
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "not a globally routable"),  # CGNAT
        ("240.0.0.1", "reserved"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "metadata"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str, label: str) -> None:
    why = address_refusal(ipaddress.ip_address(address))
    assert why is not None and label in why


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_allow_private_lifts_private_but_never_metadata() -> None:
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), allow_private=True) is None
    assert address_refusal(ipaddress.ip_address("10.0.0.1"), allow_private=True) is None
    why = address_refusal(ipaddress.ip_address("169.254.169.254"), allow_private=True)
    assert why is not None and "metadata" in why


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://example.com", "scheme"),
        ("http:///nohost", "no host"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata host"),
    ],
)
def test_bad_urls_are_refused_before_dns(url: str, message: str) -> None:
    with pytest.raises(UnsafeURLError, match=message):
        parse_webhook_url(url)


async def test_literal_and_localhost_refused_with_real_resolver() -> None:
    with pytest.raises(UnsafeURLError, match="loopback"):
        await check_webhook_url("http://127.0.0.1:8080/hook")
    with pytest.raises(UnsafeURLError, match="localhost resolves to"):
        await check_webhook_url("http://localhost:8080/hook")
    with pytest.raises(UnsafeURLError, match="metadata"):
        await check_webhook_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(UnsafeURLError, match="loopback"):
        await check_webhook_url("http://[::ffff:7f00:1]/")
    checked = await check_webhook_url("http://localhost:8080/hook", allow_private=True)
    assert all(ip.is_loopback for ip in checked.addresses)


def scripted(answers: dict[str, list[str]]):
    """Stand-in DNS: a real DNS server with public records cannot run offline in tests."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise ResolutionError(f"{host} does not resolve")
        return answers[host]

    return resolve


async def test_any_private_answer_refuses_the_host() -> None:
    resolver = scripted(
        {"hooks.example": ["93.184.215.14"], "mixed.example": ["93.184.215.14", "10.0.0.5"]}
    )
    ok = await check_webhook_url("https://hooks.example/in", resolver=resolver)
    assert [str(ip) for ip in ok.addresses] == ["93.184.215.14"]
    with pytest.raises(UnsafeURLError, match=r"mixed\.example resolves to 10\.0\.0\.5"):
        await check_webhook_url("https://mixed.example/in", resolver=resolver)
    with pytest.raises(ResolutionError):
        await check_webhook_url("https://nowhere.example/in", resolver=resolver)


async def test_pinned_request_targets_the_checked_address() -> None:
    resolver = scripted({"hooks.example": ["93.184.215.14"]})
    url_in = "https://user:pw@hooks.example:8443/in?a=1"
    checked = await check_webhook_url(url_in, resolver=resolver)
    url, headers, extensions = checked.pinned()
    assert url.host == "93.184.215.14" and url.port == 8443 and url.path == "/in"
    assert url.query == b"a=1"
    assert headers == {"Host": "hooks.example:8443"}
    assert extensions == {"sni_hostname": "hooks.example"}
