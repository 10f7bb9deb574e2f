"""A DNS resolver for tests: answers from a table, and can rebind a name between lookups."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult


class FakeDNS(AbstractResolver):
    """Answers from a table; a name given a list of answer lists gets the next one each query,
    as an attacker's DNS server that rebinds its name between lookups would answer."""

    def __init__(self, answers: dict[str, list[str] | list[list[str]]]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.queries.append(host)
        answer = self.answers[host]
        if answer and isinstance(answer[0], list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        return [ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
                for a in answer]  # type: ignore[union-attr]

    async def close(self) -> None:
        pass
