"""The SSRF matrix: literals and names that resolve to internal addresses are refused."""

from __future__ import annotations

import ipaddress

import pytest

from jobwire.dispatch.resolver import GuardedResolver
from jobwire.webhooks.ssrf import TargetRefused, check_literal, refusal
from tests.support.dns import FakeDNS

REFUSED = ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254", "::1",
           "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "fe80::1", "fc00::1", "::",
           "2002:7f00:1::1", "2002:5db8:d70e::1", "fec0::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
           "64:ff9b::7f00:1", "64:ff9b::a00:1"]


@pytest.mark.parametrize("literal", REFUSED)
def test_internal_literals_are_refused(literal: str) -> None:
    assert refusal(ipaddress.ip_address(literal), []) is not None
    with pytest.raises(TargetRefused):
        check_literal(literal, [])


@pytest.mark.parametrize("literal", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_pass(literal: str) -> None:
    assert refusal(ipaddress.ip_address(literal), []) is None


def test_nat64_passes_only_when_allowed() -> None:
    assert refusal(ipaddress.ip_address("64:ff9b::5db8:d70e"), [ipaddress.ip_network("64:ff9b::/96")]) is None


def test_allowed_cidr_exempts_loopback_only() -> None:
    allowed = [ipaddress.ip_network("127.0.0.1/32")]
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("127.0.0.2"), allowed) is not None
    assert refusal(ipaddress.ip_address("10.0.0.1"), allowed) is not None


async def test_names_resolving_to_internal_addresses_are_refused() -> None:
    resolver = GuardedResolver([], FakeDNS({"rebind.example": ["127.0.0.1"], "mixed.example": ["10.1.1.1", "93.184.215.14"]}))
    with pytest.raises(TargetRefused, match="127.0.0.1 is a loopback address"):
        await resolver.resolve("rebind.example", 443)
    kept = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in kept] == ["93.184.215.14"], "only the public address may be connected to"


async def test_a_name_rebound_to_an_internal_address_is_refused_at_the_next_lookup() -> None:
    dns = FakeDNS({"rebind.example": [["93.184.215.14"], ["127.0.0.1"], ["93.184.215.14"]]})
    resolver = GuardedResolver([], dns)
    first = await resolver.resolve("rebind.example", 443)
    assert [r["host"] for r in first] == ["93.184.215.14"], "public at the first lookup: allowed"
    with pytest.raises(TargetRefused, match="127.0.0.1 is a loopback address"):
        await resolver.resolve("rebind.example", 443)
    third = await resolver.resolve("rebind.example", 443)
    assert [r["host"] for r in third] == ["93.184.215.14"]
    assert dns.queries == ["rebind.example"] * 3, "every lookup is checked: no verdict is remembered"


@pytest.mark.parametrize("host", [
    "167772161", "2130706433", "0x7f000001", "0x0a.1", "012.0.0.1", "10.1", "127.1", "0177.0.0.1", "1.2.3.4.5",
    "example.123", "example.0x7f", "10.0.0.1.", "0x7F.0.0.1", "08.1.1.1",
])
def test_numbers_not_written_as_an_address_are_refused(host: str) -> None:
    # URL parsers and inet_aton read these as IPv4 addresses (some of them internal); whatever
    # any library makes of them, a webhook host in such a form is refused outright.
    with pytest.raises(TargetRefused, match="numeric host"):
        check_literal(host, [])


@pytest.mark.parametrize("host", ["hooks.example.com", "93.184.215.14", "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]",
                                  "x1.example", "123.example.com", "0x.example"])
def test_names_and_canonical_public_addresses_pass(host: str) -> None:
    check_literal(host, [])


async def test_decimal_integer_host_resolves_to_loopback_and_is_refused() -> None:
    # http://2130706433/ is http://127.0.0.1/ to getaddrinfo; should such a host reach the
    # resolver at all (check_literal refuses it first), the resolved address is refused too.
    resolver = GuardedResolver([])
    with pytest.raises(TargetRefused, match="loopback"):
        await resolver.resolve("2130706433", 80)
    with pytest.raises(TargetRefused, match="loopback"):
        await resolver.resolve("localhost", 80)
