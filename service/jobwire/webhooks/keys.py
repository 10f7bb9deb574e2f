"""Standard Webhooks' asymmetric signatures (``v1a``): an endpoint may be signed with an ed25519
key pair instead of a shared secret, so its receiver verifies with a public key and holds no
secret at all. Keys are serialised as the spec says: ``whsk_`` and the base64 of the 32-byte
private key (sealed at rest like a ``whsec_`` secret), ``whpk_`` and the base64 of the public
key (shown to the tenant, served by the API). The signed content is the one of ``v1``:
``{msg_id}.{timestamp}.{payload}``."""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNING_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
HMAC = "hmac"
ED25519 = "ed25519"
SCHEMES = (HMAC, ED25519)


def new_signing_key() -> str:
    return SIGNING_KEY_PREFIX + base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()


def is_signing_key(secret: str) -> bool:
    return secret.startswith(SIGNING_KEY_PREFIX)


@lru_cache(maxsize=4096)
def _private(signing_key: str) -> Ed25519PrivateKey:
    # Decoding a key costs more than a signature; endpoints are few and deliveries many.
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(signing_key.removeprefix(SIGNING_KEY_PREFIX)))


def public_key(signing_key: str) -> str:
    return PUBLIC_KEY_PREFIX + base64.b64encode(_private(signing_key).public_key().public_bytes_raw()).decode()


def sign_v1a(signing_key: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """``v1a,`` and the base64 ed25519 signature of ``{msg_id}.{timestamp}.{body}``."""
    signature = _private(signing_key).sign(f"{msg_id}.{timestamp}.".encode() + body)
    return "v1a," + base64.b64encode(signature).decode()
