"""Standard Webhooks headers: ``v1`` signatures made with the svix library for ``whsec_``
secrets, ``v1a`` (ed25519) for ``whsk_`` signing keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from svix.webhooks import Webhook

from jobwire.webhooks.keys import is_signing_key, sign_v1a


@lru_cache(maxsize=4096)
def _signer(secret: str) -> Webhook:
    # Building one decodes the secret; endpoints are few and deliveries many.
    return Webhook(secret)


def sign_headers(msg_id: str, body: bytes | str, secrets: Sequence[str], at: datetime | None = None) -> dict[str, str]:
    """Headers for one attempt: one signature per active secret or signing key (rotation
    grace), space-separated, plus ``svix-*`` copies for receivers using Svix SDKs."""
    moment = (at or datetime.now(UTC)).replace(microsecond=0)
    timestamp = str(int(moment.timestamp()))
    raw = body if isinstance(body, bytes) else body.encode()
    text = body.decode() if isinstance(body, bytes) else body  # svix signs text
    signature = " ".join(sign_v1a(secret, msg_id, timestamp, raw) if is_signing_key(secret)
                         else _signer(secret).sign(msg_id, moment, text) for secret in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
        "svix-id": msg_id,
        "svix-timestamp": timestamp,
        "svix-signature": signature,
        "content-type": "application/json",
    }
