"""Encryption of webhook endpoint secrets at rest (AES-256-GCM, key from JOBWIRE_SECRET_KEY).

The endpoints topic is readable by anyone with access to the cluster; the secrets in it are
not. Shared by the API (encrypts) and the dispatcher (decrypts).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobwire.errors import JobwireError

_CONTEXT = b"jobwire endpoint secret v1"


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        # A derived key, so JOBWIRE_SECRET_KEY may be any string of 16+ characters.
        self._aead = AESGCM(hashlib.sha256(_CONTEXT + secret_key.encode()).digest())

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, plaintext.encode(), _CONTEXT)).decode()

    def open(self, sealed: str) -> str:
        raw = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], _CONTEXT).decode()
        except InvalidTag:
            raise JobwireError("an endpoint secret does not decrypt: JOBWIRE_SECRET_KEY changed?") from None


def new_webhook_secret() -> str:
    """``whsec_`` and base64 of 24 random bytes, as Standard Webhooks receivers expect."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
