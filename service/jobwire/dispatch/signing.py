"""Standard Webhooks headers, signed with the svix library."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from svix.webhooks import Webhook


@lru_cache(maxsize=4096)
def _signer(secret: str) -> Webhook:
    # Building one decodes the secret; endpoints are few and deliveries many.
    return Webhook(secret)


def sign_headers(msg_id: str, body: bytes | str, secrets: Sequence[str], at: datetime | None = None) -> dict[str, str]:
    """Headers for one attempt: one ``v1,`` signature per active secret (rotation grace),
    space-separated, plus ``svix-*`` copies for receivers using Svix SDKs."""
    moment = (at or datetime.now(UTC)).replace(microsecond=0)
    text = body.decode() if isinstance(body, bytes) else body  # svix signs text
    signature = " ".join(_signer(secret).sign(msg_id, moment, text) for secret in secrets)
    timestamp = str(int(moment.timestamp()))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
        "svix-id": msg_id,
        "svix-timestamp": timestamp,
        "svix-signature": signature,
        "content-type": "application/json",
    }
