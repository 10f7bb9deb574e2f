"""Portal links redeemed, shared by every API replica through the endpoints topic.

A link may open one session, whichever replica it reaches and however often they restart.
Each redemption is a record on the compacted endpoints topic, keyed by tenant and nonce, that
every replica folds (as it folds endpoints). Two replicas redeeming one link at the same
moment both write; the log orders them and the first claim for a nonce wins, so exactly one
of them opens a session.

Memory is bounded by time: a redemption is kept until well after its link has expired (a
margin for clocks that disagree), then its key is handed to the replicas that redeem next,
which write a tombstone for it so the topic forgets it too. The count per tenant is kept as records are folded: the cap on recent
redemptions per tenant (one tenant cannot lock the others out) is checked in O(1).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import orjson

REDEEMED_KEY_SUFFIX = "#redeemed"
#: Redeemed nonces kept at once per tenant (links live 10 minutes; minting is behind an API key).
MAX_REDEEMED_PER_TENANT = 1000
#: Keys of forgotten redemptions remembered until a tombstone for them is read; past this, the
#: oldest are left to the topic (they are tiny, and only hold compaction back).
MAX_STALE = 10_000
#: How long after its link expires a redemption is kept, and only then tombstoned: a replica
#: whose clock runs behind still refuses the link, and one started meanwhile reads the claim.
FORGET_AFTER_S = 600.0


def redemption_key(tenant: str, nonce: str) -> str:
    return f"portal:{tenant}:{nonce}{REDEEMED_KEY_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Redemption:
    """One replica's claim on a link's nonce: ``claim`` is its own random id, so it can tell
    its claim from another replica's for the same nonce; ``until`` when the link expires
    (unix seconds)."""

    tenant: str
    nonce: str
    claim: str
    until: float

    @property
    def key(self) -> str:
        return redemption_key(self.tenant, self.nonce)

    def encode(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def decode(cls, raw: bytes) -> Redemption:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or not all(isinstance(data.get(f), str) and data[f] for f in
                                                 ("tenant", "nonce", "claim")) \
                or not isinstance(data.get("until"), int | float) or isinstance(data.get("until"), bool):
            raise ValueError("not a portal redemption record")
        return cls(data["tenant"], data["nonce"], data["claim"], float(data["until"]))


class Redemptions:
    """The first claim for each nonce, kept until its link has long expired."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._first: dict[str, Redemption] = {}
        self._per_tenant: Counter[str] = Counter()
        self._expiring: list[tuple[float, str]] = []  # heap of (until + margin, key)
        #: Keys whose redemption is forgotten and whose tombstone has not been read yet.
        self._stale: OrderedDict[str, None] = OrderedDict()

    def apply(self, key: str, value: bytes | None) -> None:
        """A record of the endpoints topic under a redemption key (a tombstone when None).
        Raises ValueError for a malformed one (the caller counts it and skips it)."""
        self.forget_expired()
        if value is None:
            # Its tombstone is written: nothing more to forget. A claim still remembered here
            # stays (a replica whose clock runs ahead wrote it): this replica forgets it itself.
            self._stale.pop(key, None)
            return
        redemption = Redemption.decode(value)
        if redemption.key != key:
            raise ValueError("a portal redemption under another nonce's key")
        if key in self._first:
            return  # a later claim for a nonce already redeemed: the first one stands
        if redemption.until + FORGET_AFTER_S <= self._clock():
            self._stale[key] = None  # long expired (read at start-up): only its tombstone is due
            self._trim_stale()
            return
        self._first[key] = redemption
        self._per_tenant[redemption.tenant] += 1
        heapq.heappush(self._expiring, (redemption.until + FORGET_AFTER_S, key))

    def winner(self, tenant: str, nonce: str) -> Redemption | None:
        """The claim that redeemed the link, if it was redeemed and is still remembered."""
        self.forget_expired()
        return self._first.get(redemption_key(tenant, nonce))

    def count(self, tenant: str) -> int:
        """The tenant's redemptions still remembered (their links expired at most
        ``FORGET_AFTER_S`` ago)."""
        self.forget_expired()
        return self._per_tenant[tenant]

    def stale(self, limit: int) -> list[str]:
        """Up to ``limit`` keys of forgotten redemptions for the topic to forget (tombstones)."""
        self.forget_expired()
        return [key for key, _ in zip(self._stale, range(limit), strict=False)]

    def forget_expired(self) -> None:
        now = self._clock()
        while self._expiring and self._expiring[0][0] <= now:
            _, key = heapq.heappop(self._expiring)
            redemption = self._first.pop(key, None)
            if redemption is None:
                continue
            self._per_tenant[redemption.tenant] -= 1
            if not self._per_tenant[redemption.tenant]:
                del self._per_tenant[redemption.tenant]
            self._stale[key] = None
            self._trim_stale()

    def _trim_stale(self) -> None:
        if len(self._stale) > MAX_STALE:
            self._stale.popitem(last=False)
