"""Encryption of webhook endpoint secrets at rest (AES-256-GCM, keys from JOBWIRE_SECRET_KEY).

The endpoints topic is readable by anyone with access to the cluster; the secrets in it are
not. Shared by the API (encrypts) and the dispatcher (decrypts).

- Each sealed value is bound to its endpoint (tenant and endpoint id are its associated data):
  copied into another endpoint's record, it does not open.
- ``JOBWIRE_SECRET_KEYS`` lists several keys, comma-separated, newest first: the first seals,
  every one opens, and each sealed value names its key by an id (a hash, never the key).
  Rotating is: put the new key first, restart, ``jobwire secrets rotate``, drop the old key.
- The AES key is derived from each listed key with scrypt (``v3.``), so the topic's sealed
  values are no cheap oracle for guessing a weak ``JOBWIRE_SECRET_KEYS``. Values sealed under
  the earlier derivation (one SHA-256, ``v2.``) still open and are bound; ``jobwire secrets
  rotate`` reseals them as ``v3.``.
- Values sealed before binding existed (no prefix) open only for ``jobwire secrets rotate``,
  which reseals them bound: anywhere else, a value that can be moved between endpoints is
  refused.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobwire.errors import JobwireError

_CONTEXT = b"jobwire endpoint secret v1"
_BOUND = b"jobwire endpoint secret v2\0"
_PREFIX = "v3."
_SHA256_PREFIX = "v2."
_SALT = b"jobwire endpoint secret v3"
#: scrypt cost: 16 MiB and about 50 ms per key, once per process (derived keys are cached).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class SecretBoxError(JobwireError):
    """A sealed secret does not open: another key, another endpoint, or damaged."""


def binding(tenant: str, endpoint_id: str) -> str:
    """What a sealed endpoint secret is bound to."""
    return f"{tenant}\0{endpoint_id}"


def key_id(secret_key: str) -> str:
    return hashlib.sha256(b"jobwire key id\0" + secret_key.encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=32)
def _derived(secret_key: str) -> tuple[AESGCM, AESGCM]:
    """The AES keys of one listed key: scrypt's (sealing, v3) and one SHA-256's (v1 and v2)."""
    slow = hashlib.scrypt(secret_key.encode(), salt=_SALT, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return AESGCM(slow), AESGCM(hashlib.sha256(_CONTEXT + secret_key.encode()).digest())


@functools.lru_cache(maxsize=32)
def stretched(secret_key: str) -> bytes:
    """Key material for secrets derived from one listed key (the tenants' callback secrets):
    scrypt first, so a derived secret a tenant is shown is no cheap oracle for guessing the key."""
    return hashlib.scrypt(secret_key.encode(), salt=b"jobwire derived secrets v1", n=SCRYPT_N, r=SCRYPT_R,
                          p=SCRYPT_P, dklen=32)


class SecretBox:
    def __init__(self, secret_keys: str) -> None:
        keys = [key.strip() for key in secret_keys.split(",") if key.strip()]
        if not keys:
            raise SecretBoxError("a SecretBox needs at least one key")
        self._keys = {key_id(key): _derived(key) for key in keys}
        self.current = key_id(keys[0])

    def seal(self, plaintext: str, *, bound_to: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self.current][0].encrypt(nonce, plaintext.encode(), _BOUND + bound_to.encode())
        return f"{_PREFIX}{self.current}.{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, *, bound_to: str, unbound_too: bool = False) -> str:
        """The secret, if ``sealed`` was sealed for ``bound_to`` under a listed key. Values from
        before binding open only with ``unbound_too`` (the reseal command)."""
        for prefix, which in ((_PREFIX, 0), (_SHA256_PREFIX, 1)):
            if sealed.startswith(prefix):
                kid, _, body = sealed[len(prefix):].partition(".")
                derived = self._keys.get(kid)
                if derived is None:
                    raise SecretBoxError(f"an endpoint secret was sealed with key {kid}, which JOBWIRE_SECRET_KEYS "
                                         "does not list: add that key back (after the current one)")
                return self._decrypt([derived[which]], body, _BOUND + bound_to.encode())
        if not unbound_too:
            raise SecretBoxError("an endpoint secret was sealed before secrets were bound to their endpoint; run "
                                 "`jobwire secrets rotate` to seal it again")
        return self._decrypt([derived[1] for derived in self._keys.values()], sealed, _CONTEXT)

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
