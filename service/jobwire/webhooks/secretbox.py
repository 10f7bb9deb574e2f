"""Encryption of webhook endpoint secrets at rest (AES-256-GCM, keys from JOBWIRE_SECRET_KEY).

The endpoints topic is readable by anyone with access to the cluster; the secrets in it are
not. Shared by the API (encrypts) and the dispatcher (decrypts).

- Each sealed value is bound to its endpoint (tenant and endpoint id are its associated data):
  copied into another endpoint's record, it does not open.
- ``JOBWIRE_SECRET_KEYS`` lists several keys, comma-separated, newest first: the first seals,
  every one opens, and each sealed value names its key by an id (a hash, never the key).
  Rotating is: put the new key first, restart, ``jobwire secrets rotate``, drop the old key.
- Values sealed before binding existed (no ``v2.`` prefix) still open with any listed key;
  resealing turns them into bound ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobwire.errors import JobwireError

_CONTEXT = b"jobwire endpoint secret v1"
_BOUND = b"jobwire endpoint secret v2\0"
_PREFIX = "v2."


class SecretBoxError(JobwireError):
    """A sealed secret does not open: another key, another endpoint, or damaged."""


def binding(tenant: str, endpoint_id: str) -> str:
    """What a sealed endpoint secret is bound to."""
    return f"{tenant}\0{endpoint_id}"


def key_id(secret_key: str) -> str:
    return hashlib.sha256(b"jobwire key id\0" + secret_key.encode()).hexdigest()[:12]


class SecretBox:
    def __init__(self, secret_keys: str) -> None:
        keys = [key.strip() for key in secret_keys.split(",") if key.strip()]
        if not keys:
            raise SecretBoxError("a SecretBox needs at least one key")
        # Derived keys, so JOBWIRE_SECRET_KEY may be any strings of 16+ characters.
        self._keys = {key_id(key): AESGCM(hashlib.sha256(_CONTEXT + key.encode()).digest()) for key in keys}
        self.current = key_id(keys[0])

    def seal(self, plaintext: str, *, bound_to: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self.current].encrypt(nonce, plaintext.encode(), _BOUND + bound_to.encode())
        return f"{_PREFIX}{self.current}.{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, *, bound_to: str) -> str:
        if sealed.startswith(_PREFIX):
            kid, _, body = sealed[len(_PREFIX):].partition(".")
            aead = self._keys.get(kid)
            if aead is None:
                raise SecretBoxError(f"an endpoint secret was sealed with key {kid}, which JOBWIRE_SECRET_KEYS "
                                     "does not list: add that key back (after the current one)")
            return self._decrypt([aead], body, _BOUND + bound_to.encode())
        return self._decrypt(list(self._keys.values()), sealed, _CONTEXT)  # sealed before binding

    def is_current(self, sealed: str) -> bool:
        """Sealed with the current key and bound: nothing for a reseal to do."""
        return sealed.startswith(f"{_PREFIX}{self.current}.")

    @staticmethod
    def _decrypt(candidates: list[AESGCM], body: str, associated: bytes) -> str:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise SecretBoxError("an endpoint secret is damaged (not base64)") from None
        for aead in candidates:
            try:
                return aead.decrypt(raw[:12], raw[12:], associated).decode()
            except (InvalidTag, ValueError):
                continue
        raise SecretBoxError("an endpoint secret does not open: its key is not in JOBWIRE_SECRET_KEYS, or the sealed "
                             "value belongs to another endpoint")


def new_webhook_secret() -> str:
    """``whsec_`` and base64 of 24 random bytes, as Standard Webhooks receivers expect."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
