"""The SSRF policy: which addresses a webhook may reach, and which ways of writing a host are
refused outright. No I/O of its own: the API checks URLs with it; the dispatcher checks each URL
before sending, every name its resolver (dispatch/resolver.py) resolves, and every address its
connector connects to (``guarded_socket``, which only makes the socket).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

from jobwire.errors import JobwireError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(JobwireError):
    """A webhook target resolves to an address the guard does not allow."""


def refusal(address: Address, allowed: Sequence[Network]) -> str | None:
    """Why ``address`` may not be connected to, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in net for net in allowed if net.version == address.version):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        # Addresses that carry an IPv4 address a relay may forward to: 6to4 (2002::/16) and
        # Teredo; and the deprecated site-local fec0::/10, private in all but name.
        if address.sixtofour is not None or address.teredo is not None:
            return f"{address} embeds an IPv4 address (6to4 or Teredo)"
        if address in NAT64:  # a NAT64 gateway would forward it to the IPv4 address inside
            return f"{address} is a NAT64 address (allow 64:ff9b::/96 to use a NAT64 gateway)"
        if address.is_site_local:
            return f"{address} is a site-local address"
    for label, test in (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
                        ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                        ("private", address.is_private), ("reserved", address.is_reserved)):
        if test:
            return f"{address} is a {label} address"
    if not address.is_global:  # CGNAT 100.64/10, documentation and other special ranges
        return f"{address} is not a public address"
    return None


def parse_literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_literal(host: str, allowed: Sequence[Network]) -> None:
    """Refuse a host that is an address the guard does not allow, or that a URL parser or
    resolver could read as an address although it is not written as one."""
    address = parse_literal(host)
    if address is None and _numeric(host):
        raise TargetRefused("refused by the SSRF guard: a numeric host must be a dotted-quad IPv4 "
                            "address (a.b.c.d) or a bracketed IPv6 address")
    if address is not None and (why := refusal(address, allowed)):
        raise TargetRefused(f"refused by the SSRF guard: {why}")


def connect_host(url: str) -> str:
    """The host an HTTP client connects to for ``url``, as yarl (aiohttp's URL parser)
    normalises it: IDNA mapping turns fullwidth digits and ideographic or halfwidth full stops
    into ASCII ones, so ``１６９.２５４.１６９.２５４`` is 169.254.169.254. ``ValueError`` when
    it is not a valid host."""
    return URL(url).raw_host or ""


def check_target_url(url: str, allowed: Sequence[Network]) -> None:
    """Refuse ``url`` when its host, as written or as the client will connect to it, is a
    refused address or a form that reads as one; and any host written in non-ASCII characters
    that normalises to an address (nobody writes an address so but to get past a check)."""
    written = urlsplit(url).hostname or ""
    try:
        host = connect_host(url)
    except (ValueError, UnicodeError):
        raise TargetRefused("refused by the SSRF guard: the host is not a valid host name") from None
    if not written.isascii() and (parse_literal(host) is not None or _numeric(host)):
        raise TargetRefused("refused by the SSRF guard: a host written in non-ASCII characters reads as an "
                            "address; write addresses in ASCII digits")
    check_literal(written, allowed)
    check_literal(host, allowed)


def guarded_socket(allowed: Sequence[Network]) -> Callable[[Any], socket.socket]:
    """A socket factory for aiohttp's connector: the policy applied to the very address each
    connection is made to, IP literals included (aiohttp resolves no literal, so the guarded
    resolver never sees one)."""
    kept = tuple(allowed)

    def make(addr_info: Any) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        why = refusal(ipaddress.ip_address(sockaddr[0]), kept)
        if why is not None:
            raise TargetRefused(f"refused by the SSRF guard: {why}")
        return socket.socket(family=family, type=kind, proto=proto)

    return make


def _numeric(host: str) -> bool:
    """Whether ``host``'s last label is a number (decimal, octal or 0x-hex): URL parsers
    (WHATWG) and inet_aton then read the whole host as an IPv4 address in some short or
    non-decimal form (``167772161``, ``0x0a.1``, ``012.0.0.1``, ``10.1``), whatever
    ``ipaddress`` makes of it."""
    last = host.rstrip(".").rsplit(".", 1)[-1].lower()
    if last.startswith("0x"):
        last = last[2:]
        return all(c in "0123456789abcdef" for c in last)
    return last.isascii() and last.isdigit()
