"""The SSRF matrix: literals and names that resolve to internal addresses are refused."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from jobwire.ssrf import GuardedResolver, TargetRefused, check_literal, refusal

REFUSED = ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254", "::1",
           "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "fe80::1", "fc00::1", "::"]


@pytest.mark.parametrize("literal", REFUSED)
def test_internal_literals_are_refused(literal: str) -> None:
    assert refusal(ipaddress.ip_address(literal), []) is not None
    with pytest.raises(TargetRefused):
        check_literal(literal, [])


@pytest.mark.parametrize("literal", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_pass(literal: str) -> None:
    assert refusal(ipaddress.ip_address(literal), []) is None


def test_allowed_cidr_exempts_loopback_only() -> None:
    allowed = [ipaddress.ip_network("127.0.0.1/32")]
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("127.0.0.2"), allowed) is not None
    assert refusal(ipaddress.ip_address("10.0.0.1"), allowed) is not None


class FakeDNS(AbstractResolver):
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
                for a in self.answers[host]]

    async def close(self) -> None:
        pass


async def test_names_resolving_to_internal_addresses_are_refused() -> None:
    resolver = GuardedResolver([], FakeDNS({"rebind.example": ["127.0.0.1"], "mixed.example": ["10.1.1.1", "93.184.215.14"]}))
    with pytest.raises(TargetRefused, match="127.0.0.1 is a loopback address"):
        await resolver.resolve("rebind.example", 443)
    kept = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in kept] == ["93.184.215.14"], "only the public address may be connected to"


async def test_decimal_integer_host_resolves_to_loopback_and_is_refused() -> None:
    # http://2130706433/ is http://127.0.0.1/ to getaddrinfo; aiohttp hands it to the resolver.
    resolver = GuardedResolver([])
    with pytest.raises(TargetRefused, match="loopback"):
        await resolver.resolve("2130706433", 80)
    with pytest.raises(TargetRefused, match="loopback"):
        await resolver.resolve("localhost", 80)
