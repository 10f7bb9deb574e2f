"""The resolver the dispatcher's HTTP session connects through: the SSRF policy applied to the
addresses actually connected to.

It runs for every connection, so a name that resolves to 127.0.0.1 (or re-resolves there
later: DNS rebinding) is refused like the literal is. aiohttp never resolves IP literals, so
the sender checks those with ``check_literal`` before connecting.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from jobwire.webhooks.ssrf import Network, TargetRefused, refusal


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops every refused address."""

    def __init__(self, allowed: Sequence[Network], inner: AbstractResolver | None = None) -> None:
        self._allowed = tuple(allowed)
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept, reasons = [], []
        for result in results:
            why = refusal(ipaddress.ip_address(result["host"]), self._allowed)
            if why is None:
                kept.append(result)
            else:
                reasons.append(why)
        if not kept:
            raise TargetRefused(f"refused by the SSRF guard: {host} resolves to {'; '.join(reasons)}")
        return kept

    async def check_every_address(self, host: str, port: int) -> None:
        """TargetRefused unless every address ``host`` has, IPv4 and IPv6, is allowed: for a
        name someone else (an egress proxy) resolves again and may connect to any of them."""
        results = await self._inner.resolve(host, port, socket.AF_UNSPEC)
        reasons = [why for result in results
                   if (why := refusal(ipaddress.ip_address(result["host"]), self._allowed)) is not None]
        if reasons or not results:
            raise TargetRefused(f"refused by the SSRF guard: {host} resolves to {'; '.join(reasons) or 'nothing'}")

    async def close(self) -> None:
        await self._inner.close()
